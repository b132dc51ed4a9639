"""Safe runs: a run directory is resumed exactly, reported, or refused.

Every refused or repeated command below leaves the earlier run's files
byte-identical (hashes compared) and prints one error line, no traceback.
Tiny real-data runs (scikit-learn digits, Debian's Fashion-MNIST).
"""

import hashlib
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
OPS = "--primitives=none,max_pool_3x3,skip_connect,sep_conv_3x3"
SEARCH = ["--dataset=digits", "--layers=3", "--nodes=1", "--init_channels=4", "--train_size=200",
          "--batch_size=32", "--epochs=1", OPS]
TRAIN = ["--dataset=digits", "--layers=3", "--init_channels=4", "--train_size=200",
         "--batch_size=32", "--epochs=1", "--validation_fraction=0.2", "--cutout=0",
         "--noauxiliary"]


def _run(module, args, timeout=900):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def _hashes(directory):
    out = {}
    for base, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, directory)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def _refused(proc, *needles):
    assert proc.returncode not in (0, None), proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    message = proc.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in message, message


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    pytest.importorskip("sklearn")
    run = tmp_path_factory.mktemp("safe") / "search"
    proc = _run("trainers.search_cifar", SEARCH + [f"--model_dir={run}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def test_same_search_command_reports_the_finished_run(search_run):
    before = _hashes(search_run)
    proc = _run("trainers.search_cifar", SEARCH + [f"--model_dir={search_run}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already finished" in proc.stdout
    assert _hashes(search_run) == before


def test_flagfile_reproduces_the_run_identity(search_run):
    flagfile = (search_run / "flagfile.txt").read_text()
    assert "--primitives=none,max_pool_3x3,skip_connect,sep_conv_3x3" in flagfile
    before = _hashes(search_run)
    proc = _run("trainers.search_cifar", [f"--flagfile={search_run / 'flagfile.txt'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already finished" in proc.stdout
    assert _hashes(search_run) == before


@pytest.mark.parametrize("change, named", [
    ("--batch_size=16", "batch_size: run 32, now 16"),
    ("--dataset=fashion_mnist", "dataset: run 'digits', now 'fashion_mnist'"),
    ("--init_channels=6", "init_channels: run 4, now 6"),
    ("--seed=1", "seed: run 0, now 1"),
])
def test_changed_search_settings_are_refused_before_anything_is_written(search_run, change,
                                                                        named):
    before = _hashes(search_run)
    proc = _run("trainers.search_cifar", SEARCH + [f"--model_dir={search_run}", change])
    _refused(proc, named)
    assert _hashes(search_run) == before


def test_a_larger_budget_needs_extend_run_and_keeps_earlier_results(search_run, tmp_path):
    before = _hashes(search_run)
    proc = _run("trainers.search_cifar", SEARCH[:-2] + [
        "--epochs=2", OPS, f"--model_dir={search_run}"])
    _refused(proc, "epochs: run 1, now 2", "--extend_run")
    assert _hashes(search_run) == before
    genotype = (search_run / "genotype.json").read_text()
    proc = _run("trainers.search_cifar", SEARCH[:-2] + [
        "--epochs=2", OPS, f"--model_dir={search_run}", "--extend_run"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (search_run / "genotype.attempt-1.json").read_text() == genotype
    assert (search_run / "search_result.attempt-1.json").exists()
    history = [json.loads(line) for line in (search_run / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    # The extension is part of the run: its first epoch ran under the 1-epoch
    # schedule, so a fresh 2-epoch command is another run; the same
    # --extend_run command (and the run's flagfile) reads it back.
    identity = json.loads((search_run / "run_identity.json").read_text())
    assert identity["extended_from"] == [{"settings.epochs": 1}]
    assert json.loads((search_run / "flags.attempt-1.json").read_text())["epochs"] == 1
    assert "--epochs=1\n" in (search_run / "flagfile.attempt-1.txt").read_text()
    flagfile = (search_run / "flagfile.txt").read_text()
    assert "--epochs=2\n" in flagfile and "--extend_run\n" in flagfile
    before = _hashes(search_run)
    _refused(_run("trainers.search_cifar", SEARCH[:-2] + [
        "--epochs=2", OPS, f"--model_dir={search_run}"]), "extended", "epochs 1")
    assert _hashes(search_run) == before
    for again in (SEARCH[:-2] + ["--epochs=2", OPS, f"--model_dir={search_run}", "--extend_run"],
                  [f"--flagfile={search_run / 'flagfile.txt'}"]):
        proc = _run("trainers.search_cifar", again)
        assert proc.returncode == 0 and "already finished" in proc.stdout, proc.stderr[-3000:]
        assert _hashes(search_run) == before


def test_unusable_output_paths_are_refused(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("precious")
    _refused(_run("trainers.search_cifar", SEARCH + [f"--model_dir={a_file}"]),
             "is an existing file; give a directory")
    assert a_file.read_text() == "precious"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "metrics.jsonl").write_text("earlier\n")
    _refused(_run("trainers.search_cifar", SEARCH + [f"--model_dir={foreign}"]),
             "run_identity.json")
    assert (foreign / "metrics.jsonl").read_text() == "earlier\n"
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "run_identity.json").write_text("{}")
    _refused(_run("trainers.search_cifar", SEARCH + [f"--model_dir={parent / 'inner'}"]),
             "inside the run directory")
    assert not (parent / "inner").exists()
    _refused(_run("trainers.search_cifar", SEARCH + ["--model_dir=/proc/datanas_run"]),
             "not a writable directory")


@pytest.mark.parametrize("args, named", [
    (["--layers=2"], "--layers=2"),
    (["--primitives="], "--primitives"),
    (["--data_dir=/nonexistent/datanas"], "/nonexistent/datanas"),
    (["--dtype_policy=mixed_float16"], "'mixed_float16' is not supported: float16 needs loss"),
])
def test_invalid_search_shapes_and_data_dirs_are_refused(tmp_path, args, named):
    run = tmp_path / "run"
    _refused(_run("trainers.search_cifar", SEARCH + [f"--model_dir={run}", *args]), named)
    assert not run.exists()


def test_empty_or_file_data_dir_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "data.bin"
    a_file.write_bytes(b"\0")
    for data_dir in (empty, a_file):
        run = tmp_path / "run"
        proc = _run("trainers.search_cifar", [*SEARCH[1:], "--dataset=fashion_mnist",
                                              f"--data_dir={data_dir}", f"--model_dir={run}"])
        _refused(proc, str(data_dir))
        assert not run.exists()


def test_training_run_is_reported_refused_and_never_rewritten(tmp_path):
    pytest.importorskip("sklearn")
    from datanas.spaces.darts_cnn.genotype import DARTS_V2, save_genotype
    genotype = tmp_path / "genotype.json"
    save_genotype(DARTS_V2, genotype)
    run = tmp_path / "train"
    export = tmp_path / "export_is_a_file"
    export.write_text("x")
    args = TRAIN + [f"--genotype={genotype}", f"--model_dir={run}"]
    _refused(_run("trainers.train_cifar", args + [f"--export_dir={export}"]),
             "--export_dir", "is an existing file; give a directory")
    assert not run.exists()
    proc = _run("trainers.train_cifar", args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["final"]["epoch"] == 1
    before = _hashes(run)
    proc = _run("trainers.train_cifar", args)
    assert proc.returncode == 0 and "already finished" in proc.stdout
    assert _hashes(run) == before
    proc = _run("trainers.train_cifar", args + ["--dataset=fashion_mnist", "--learning_rate=0.5"])
    _refused(proc, "dataset: run 'digits', now 'fashion_mnist'",
             "learning_rate: run 0.025, now 0.5")
    assert _hashes(run) == before
    _refused(_run("trainers.train_cifar", args + ["--layers=2"]), "--layers=2")
    assert _hashes(run) == before


def test_a_run_directory_has_one_writer_and_a_killed_writer_is_taken_over(tmp_path):
    # A process holding the run's lock (as a search writing it would) makes a
    # second command on the same directory stop with one line naming it;
    # once that process is killed, the directory is taken over without help.
    from datanas.engine.run_identity import begin_run, plan_run  # pylint: disable=import-outside-toplevel
    from datanas.engine.run_lock import LOCK_FILE, release_all_run_locks  # pylint: disable=import-outside-toplevel

    pytest.importorskip("sklearn")
    run = tmp_path / "run"
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from datanas.engine.run_lock import "
         "acquire_run_lock; acquire_run_lock(sys.argv[1]); print('locked', flush=True); "
         "time.sleep(600)", str(run)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        run.mkdir()
        assert owner.stdout.readline().strip() == "locked"
        proc = _run("trainers.search_cifar", SEARCH + [f"--model_dir={run}"])
        _refused(proc, str(run), f"process {owner.pid}", "wait for it")
        assert sorted(os.listdir(run)) == [LOCK_FILE]   # nothing else was written
    finally:
        owner.kill()
        owner.wait()
    plan = plan_run(str(run), {"format": 2, "settings": {"seed": 0}}, result_file="r.json")
    assert plan.status == "new"   # a lone lock file is not an earlier run
    begin_run(plan)
    with open(run / LOCK_FILE) as handle:
        assert json.load(handle)["pid"] == os.getpid()
    release_all_run_locks()
    assert sorted(os.listdir(run)) == ["run_identity.json"]
    # A process that ends normally leaves no lock behind.
    subprocess.run([sys.executable, "-c", "import sys; from datanas.engine.run_lock import "
                    "acquire_run_lock; acquire_run_lock(sys.argv[1])", str(run)], cwd=ROOT,
                   env=ENV, check=True)
    assert sorted(os.listdir(run)) == ["run_identity.json"]
