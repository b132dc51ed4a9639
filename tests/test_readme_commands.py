"""Every command the README (and docs/) shows names a real entry point and real flags.

Each ``python -m module ...`` / ``python script.py ...`` of README.md and of
the Markdown pages under docs/ is parsed by its entry point: an absl module is
imported once and every command's arguments are parsed by its flags (unknown
flags, types, enums, bounds and validators, as before main() runs); an
argparse script is run with its arguments followed by ``--help``.  Nothing is
trained here; the commands' behaviour is claimed by the end-to-end tests.
"""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
_COMMAND = re.compile(r"python (-m [\w.]+|[\w/]+\.py)((?:[ \t]+[^\s`#;|&]+)*)")


def _documents():
    """README.md, then every Markdown page under docs/ (their commands are the same promise)."""
    pages = [os.path.join(ROOT, "README.md")]
    for directory, _, names in sorted(os.walk(os.path.join(ROOT, "docs"))):
        pages += [os.path.join(directory, n) for n in sorted(names) if n.endswith(".md")]
    return pages


def readme_commands(pages=None):
    """(entry point, [arguments]) of every command in `pages` (default README.md), in order."""
    commands = []
    for page in pages or [os.path.join(ROOT, "README.md")]:
        with open(page, encoding="utf-8") as handle:
            text = re.sub(r"\\\n\s*", " ", handle.read())      # shell line continuations
        for match in _COMMAND.finditer(text):
            entry = match.group(1)
            try:   # the shell's words: --command="python -m ..." is one argument
                args = shlex.split(match.group(2))
            except ValueError:   # a quote closed past the match
                args = match.group(2).split()
            if entry == "-m pytest":
                continue
            commands.append((entry, [a for a in args if a != "..."]))
    return commands


def test_the_readme_shows_the_commands_of_every_trainer():
    entries = {entry for entry, _ in readme_commands()}
    trainers = {f"-m trainers.{name[:-3]}" for name in os.listdir(os.path.join(ROOT, "trainers"))
                if name.endswith(".py") and not name.startswith("_")
                and name != "ablation_runner.py"}
    assert trainers <= entries, sorted(trainers - entries)


def _commands_by_entry():
    """{entry point: [arguments of each of its commands]} over README.md and docs/."""
    grouped = {}
    for entry, args in readme_commands(_documents()):
        grouped.setdefault(entry, []).append(args)
    return grouped


# Runs an absl entry point once as __main__ with app.run replaced by a no-op
# (its flags get defined, main() does not run), then parses every command's
# arguments with its FLAGS as app.run would before calling main(): unknown
# flags, bad types, enums, bounds and validators are errors.  One interpreter
# per entry point, not per command: importing TensorFlow is most of a
# command's cost.
_ABSL_PARSE = """
import json, runpy, sys
from absl import app, flags
app.run = lambda main, argv=None, **kwargs: None
runpy.run_module(sys.argv[1], run_name="__main__", alter_sys=True)
errors = []
for args in json.loads(sys.argv[2]):
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS([sys.argv[1]] + args)
        errors.append(None)
    except Exception as error:  # pylint: disable=broad-except
        # A page may name a command without its required flags ("python -m
        # trainers.visualize draws ..."): only a missing required flag is no error.
        lines = str(error).splitlines()
        errors.append(None if lines and all("must have a value other than None" in line
                                            for line in lines)
                      else f"{type(error).__name__}: {error}")
print("RESULT " + json.dumps(errors))
"""


def _argparse_errors(path, args):
    """The error of one argparse script's command, or None: it is run with
    `--help` after its arguments, so it parses them and exits (nothing runs)."""
    proc = subprocess.run([sys.executable, path, *args, "--help"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Traceback" in output or "error:" in proc.stderr:
        return output[-2000:]
    defined = set(re.findall(r"--([\w-]+)", proc.stdout))
    unknown = sorted({a[2:].split("=", 1)[0] for a in args if a.startswith("--")} - defined)
    return f"no flag(s) {unknown}" if unknown else None


@pytest.mark.parametrize("entry,commands", sorted(_commands_by_entry().items()),
                         ids=lambda value: value if isinstance(value, str) else "")
def test_readme_commands_parse_and_use_only_defined_flags(entry, commands):
    if entry.startswith("-m "):
        module = entry[3:]
        path = os.path.join(ROOT, *module.split(".")) + ".py"
    else:
        module, path = None, os.path.join(ROOT, entry)
    assert os.path.exists(path), f"{entry}: no such entry point ({path})"
    with open(path, encoding="utf-8") as handle:
        argparse_style = "argparse" in handle.read()
    if argparse_style:
        errors = [_argparse_errors(path, args) for args in commands]
    else:
        assert module is not None, f"{entry}: an absl script is run here as python -m <module>"
        proc = subprocess.run([sys.executable, "-c", _ABSL_PARSE, module, json.dumps(commands)],
                              cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "RESULT " in proc.stdout, (proc.stdout + proc.stderr)[-3000:]
        errors = json.loads(proc.stdout.split("RESULT ", 1)[1])
    failed = [f"python {entry} {' '.join(args)}\n    {error}"
              for args, error in zip(commands, errors) if error is not None]
    assert not failed, "\n".join(failed)


def test_a_bad_command_is_caught_by_the_check():
    """The check refuses an unknown flag, a value of the wrong type and one
    out of bounds, each error naming the flag or value."""
    bad = [["--no_such_flag=1"], ["--epochs=many"], ["--M=0"], ["--preset=cpu"],
           ["--preset=cpu", "--model_dir=/tmp/x"]]
    proc = subprocess.run([sys.executable, "-c", _ABSL_PARSE, "trainers.search_cifar",
                           json.dumps(bad)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    errors = json.loads(proc.stdout.split("RESULT ", 1)[1])
    # The fourth lacks the required --model_dir: a page may name a command so.
    assert [e is None for e in errors] == [False, False, False, True, True], errors
    assert "no_such_flag" in errors[0] and "many" in errors[1] and "--M=0" in errors[2]


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = re.findall(r"^python -m pytest .*$", handle.read(), flags=re.MULTILINE)
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as handle:
        ci = re.findall(r"^python -m pytest .*$", handle.read(), flags=re.MULTILINE)
    assert len(readme) == 1 and ci == readme, (readme, ci)
