"""Every command the README (and docs/) shows names a real entry point and real flags.

Each ``python -m module ...`` / ``python script.py ...`` of README.md and of
the Markdown pages under docs/ is run
with its own arguments followed by a help flag: the entry point must exist,
parse the given values (absl checks types, enums and bounds before the help
flag exits) and define every ``--flag`` the command uses.  Nothing is
trained here; the commands' behaviour is claimed by the end-to-end tests.
"""

import os
import re
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
            entry, args = match.group(1), match.group(2).split()
            if entry == "-m pytest":
                continue
            commands.append((entry, [a for a in args if a != "..."]))
    return commands


def _defined_flags(help_text, argparse_style):
    if argparse_style:
        return set(re.findall(r"--([\w-]+)", help_text))
    return set(re.findall(r"^\s+--(?:\[no\])?(\w+):", help_text, flags=re.MULTILINE))


def test_the_readme_shows_the_commands_of_every_trainer():
    entries = {entry for entry, _ in readme_commands()}
    trainers = {f"-m trainers.{name[:-3]}" for name in os.listdir(os.path.join(ROOT, "trainers"))
                if name.endswith(".py") and not name.startswith("_")
                and name != "ablation_runner.py"}
    assert trainers <= entries, sorted(trainers - entries)


@pytest.mark.parametrize("entry,args", readme_commands(_documents()),
                         ids=lambda value: value if isinstance(value, str) else " ".join(value))
def test_readme_command_parses_and_uses_only_defined_flags(entry, args):
    if entry.startswith("-m "):
        prefix = ["-m", entry[3:]]
        path = os.path.join(ROOT, *entry[3:].split(".")) + ".py"
    else:
        prefix, path = [entry], os.path.join(ROOT, entry)
    assert os.path.exists(path), f"{entry}: no such entry point ({path})"
    with open(path, encoding="utf-8") as handle:
        argparse_style = "argparse" in handle.read()
    help_flag = "--help" if argparse_style else "--helpfull"
    proc = subprocess.run([sys.executable, *prefix, *args, help_flag], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output and "FATAL Flags parsing error" not in output, output[-2000:]
    assert "error:" not in proc.stderr, proc.stderr[-2000:]
    defined = _defined_flags(proc.stdout, argparse_style)
    assert defined, f"{entry} printed no flag help:\n{output[-2000:]}"
    used = {a[2:].split("=", 1)[0] for a in args if a.startswith("--")}
    unknown = {name for name in used
               if name not in defined and not (name.startswith("no") and name[2:] in defined)}
    assert not unknown, f"{entry} has no flag(s) {sorted(unknown)}"


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = re.findall(r"^python -m pytest .*$", handle.read(), flags=re.MULTILINE)
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as handle:
        ci = re.findall(r"^python -m pytest .*$", handle.read(), flags=re.MULTILINE)
    assert len(readme) == 1 and ci == readme, (readme, ci)
