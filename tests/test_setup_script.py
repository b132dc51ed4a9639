"""setup.sh, the README's one-line install (and .ci/run's): which commands it runs
where (--dry-run prints them; .ci/run runs them for real on a fresh machine)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "setup.sh")


def _bin_dir(tmp_path, *, apt):
    """A PATH holding only what the script needs, without Graphviz (and apt-get if `apt`)."""
    directory = tmp_path / ("bin_apt" if apt else "bin")
    directory.mkdir()
    for tool in ("dirname", "id", "sed"):
        for prefix in ("/usr/bin", "/bin"):
            if os.path.exists(os.path.join(prefix, tool)):
                os.symlink(os.path.join(prefix, tool), directory / tool)
                break
    if apt:
        fake = directory / "apt-get"
        fake.write_text("#!/bin/sh\necho 'fake apt-get must not run in --dry-run' >&2\nexit 9\n")
        fake.chmod(0o755)
    return str(directory)


def _dry_run(path, *args):
    env = dict(os.environ, PATH=path, PYTHON=sys.executable)
    return subprocess.run(["/bin/bash", SCRIPT, "--dry-run", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_setup_installs_graphviz_with_apt_then_the_package(tmp_path):
    proc = _dry_run(_bin_dir(tmp_path, apt=True))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    if os.geteuid() == 0:
        install = [l for l in lines if "apt-get install -y -qq" in l]
        assert len(install) == 1 and "graphviz" in install[0].split()
        assert lines.index(install[0]) < lines.index(
            f"+ {sys.executable} -m pip install --quiet -e .[test]")
    else:   # not root: a hint instead of apt-get
        assert "apt-get install" in proc.stderr and "graphviz" in proc.stderr
    assert f"+ {sys.executable} -m pip install --quiet -e .[test]" in lines


def test_setup_without_apt_prints_the_install_hint_and_still_installs_the_package(tmp_path):
    proc = _dry_run(_bin_dir(tmp_path, apt=False))
    assert proc.returncode == 0, proc.stderr
    assert "apt-get is not available" in proc.stderr and "brew install graphviz" in proc.stderr
    assert f"+ {sys.executable} -m pip install --quiet -e .[test]" in proc.stdout.splitlines()


def test_setup_refuses_unknown_arguments_by_name():
    proc = subprocess.run(["/bin/bash", SCRIPT, "--yes"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "unknown argument '--yes'; allowed: --dry-run, --help" in proc.stderr
