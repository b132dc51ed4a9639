"""Setting up a run: nothing is written before every setting is checked, and
an export never replaces another.

A refused command leaves no run directory behind (so the corrected command
is not "a different run") and every earlier file byte-identical; an
``--export_dir`` that already holds files, or is (or lies in) another run's
directory, is refused before anything is built; ``--extend_run`` keeps the
earlier export under an attempt name.  Tiny digits runs, as test_safe_runs.
"""

import json
import os

import pytest

from datanas.engine.run_identity import IDENTITY_FILE, RunPlan, RunRefused, begin_run
from datanas.engine.run_lock import release_run_lock
from test_safe_runs import SEARCH, TRAIN, _hashes, _refused, _run  # tests/ is on the path


@pytest.mark.parametrize("bad", ["--primitives=none,foo_conv", "--primitives=none"])
def test_a_refused_search_setting_writes_nothing(tmp_path, bad):
    # (--max_params=1: the next test.)
    pytest.importorskip("sklearn")
    run = tmp_path / "run"
    proc = _run("trainers.search_cifar", SEARCH + [f"--model_dir={run}", bad])
    _refused(proc, "search_cifar: error:", bad.split("=")[1].split(",")[-1])
    assert not run.exists() or not os.listdir(run)


def test_the_corrected_command_runs_where_a_refused_one_stopped(tmp_path):
    pytest.importorskip("sklearn")
    run = tmp_path / "run"
    _refused(_run("trainers.search_cifar", SEARCH + [f"--model_dir={run}", "--max_params=1"]),
             "max_params=1")
    proc = _run("trainers.search_cifar", SEARCH + [f"--model_dir={run}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "search_result.json").exists()


def _export_refused(path, model_dir, status="new", earlier_export=None, identity=None):
    from datanas.engine.run_identity import check_export_dir  # pylint: disable=import-outside-toplevel
    with pytest.raises(RunRefused) as refused:
        check_export_dir(str(path), str(model_dir), status=status, earlier_export=earlier_export,
                         identity=identity)
    message = str(refused.value)
    assert "\n" not in message and f"--export_dir={path}" in message, message
    return message


def test_export_dir_rules(tmp_path):
    from datanas.engine.run_identity import check_export_dir  # pylint: disable=import-outside-toplevel
    run, other = tmp_path / "run", tmp_path / "other"
    for directory in (run, other):
        directory.mkdir()
        (directory / IDENTITY_FILE).write_text("{}")
    # Absent, empty, or inside the run's own directory: accepted.
    for path in (tmp_path / "new", run / "saved_model", tmp_path / "nested" / "export"):
        for status in ("new", "resume", "extend"):
            assert check_export_dir(str(path), str(run), status=status) == str(path)
    (tmp_path / "empty").mkdir()
    assert check_export_dir(str(tmp_path / "empty"), str(run)) == str(tmp_path / "empty")
    # Another run's directory (finished or not), or a directory in it.
    assert "run directory" in _export_refused(other, run)
    assert "run directory" in _export_refused(other / "saved_model", run)
    # The run directory itself would mix the export with the run's files.
    assert "saved_model" in _export_refused(run, run)
    # A directory holding the run directory.
    assert "holds" in _export_refused(tmp_path, tmp_path / "fresh" / "run")
    # An existing export, anywhere, for a new, resumed or extended run.
    export = tmp_path / "export"
    export.mkdir()
    (export / "saved_model.pb").write_bytes(b"x")
    for status in ("new", "resume", "extend"):
        message = _export_refused(export, run, status=status)
        assert "saved_model.pb" in message and "never replaced" in message, message
    # The same run resumed after a kill between its export and its result
    # file: its own export (EXPORT_RECORD names the run and its identity).
    from datanas.engine.run_identity import (  # pylint: disable=import-outside-toplevel
        EXPORT_RECORD, export_record)
    saved = {"format": 2, "settings": {"epochs": 1}}
    (export / EXPORT_RECORD).write_text(json.dumps(export_record(str(run), saved)))
    assert str(run) not in (export / EXPORT_RECORD).read_text()   # digests, not paths
    (tmp_path / "link").symlink_to(run)   # the same run reached by another path
    for status in ("resume", "extend"):   # goes on, or is extended further
        for model_dir in (run, tmp_path / "link"):
            assert check_export_dir(str(export), str(model_dir), status=status,
                                    identity=saved) == str(export)
    for status, model_dir, identity in (("new", run, saved), ("resume", other, saved),
                                        ("resume", run, {**saved, "seed": 1})):
        assert "never replaced" in _export_refused(export, model_dir, status=status,
                                                   identity=identity)
    (export / EXPORT_RECORD).unlink()
    # Extending the run that wrote it: kept under an attempt name (begin_run).
    assert check_export_dir(str(export), str(run), status="extend",
                            earlier_export=str(export)) == str(export)
    plan = RunPlan("extend", str(run), {"format": 2, "settings": {"epochs": 2}})
    try:
        begin_run(plan, earlier_export=str(export))
    finally:
        release_run_lock(str(run))
    assert not export.exists()
    assert (tmp_path / "export.attempt-1" / "saved_model.pb").read_bytes() == b"x"


def test_an_export_is_never_replaced(tmp_path):
    pytest.importorskip("sklearn")
    from datanas.spaces.darts_cnn.genotype import DARTS_V2, save_genotype
    genotype = tmp_path / "genotype.json"
    save_genotype(DARTS_V2, genotype)
    first, second = tmp_path / "first", tmp_path / "second"
    export = first / "saved_model"
    args = TRAIN + [f"--genotype={genotype}"]
    proc = _run("trainers.train_cifar", args + [f"--model_dir={first}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Killed after its last checkpoint, before its result and export: the
    # resumed run writes both.
    (first / "results.json").rename(tmp_path / "results.json")
    proc = _run("trainers.train_cifar", args + [f"--model_dir={first}", f"--export_dir={export}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    exported = _hashes(export)
    assert "saved_model.pb" in exported
    before = _hashes(first)
    proc = _run("trainers.train_cifar", args + [f"--model_dir={first}", f"--export_dir={export}"])
    assert proc.returncode == 0 and "already finished" in proc.stdout, proc.stderr[-3000:]
    assert _hashes(first) == before
    # Another run may not export into the first one's export, nor into its
    # run directory.
    for target in (export, first):
        _refused(_run("trainers.train_cifar", args + [f"--model_dir={second}",
                                                      f"--export_dir={target}"]),
                 f"--export_dir={target}")
        assert not second.exists()
        assert _hashes(first) == before
    # Extending the first run keeps its export under an attempt name.
    longer = [a for a in args if not a.startswith("--epochs=")] + ["--epochs=2"]
    proc = _run("trainers.train_cifar", longer + [f"--model_dir={first}",
                                                  f"--export_dir={export}", "--extend_run"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _hashes(first / "saved_model.attempt-1") == exported
    assert (export / "saved_model.pb").exists() and _hashes(export) != exported
    assert (first / "model.attempt-1.keras").exists()
    assert json.loads((first / "results.json").read_text())["final"]["epoch"] == 2
    # Killed between that export and its result file: the same command
    # resumes, keeps its own export under an attempt name and exports again.
    extended = _hashes(export)
    (first / "results.json").unlink()
    proc = _run("trainers.train_cifar", longer + [f"--model_dir={first}",
                                                  f"--export_dir={export}", "--extend_run"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _hashes(first / "saved_model.attempt-2") == extended
    assert (export / "saved_model.pb").exists() and (first / "results.json").exists()


def test_an_extension_is_recorded_in_the_identity(tmp_path):
    from datanas.engine.run_identity import plan_run  # pylint: disable=import-outside-toplevel

    run = str(tmp_path / "run")

    def identity(epochs):
        return {"format": 2, "settings": {"epochs": epochs, "seed": 0}}

    def begin(epochs, extend):
        plan = plan_run(run, identity(epochs), result_file="r.json", extend=extend)
        try:
            begin_run(plan, result_files=("r.json",))
        finally:
            release_run_lock(run)
        (tmp_path / "run" / "r.json").write_text("{}")   # the run finished
        return plan

    assert begin(1, extend=False).status == "new"
    assert begin(2, extend=True).status == "extend"
    assert begin(3, extend=True).status == "extend"
    saved = json.loads((tmp_path / "run" / IDENTITY_FILE).read_text())
    assert saved == {**identity(3), "extended_from": [{"settings.epochs": 1},
                                                      {"settings.epochs": 2}]}
    assert sorted(os.listdir(run)) == sorted([IDENTITY_FILE, "r.attempt-1.json",
                                              "r.attempt-2.json", "r.json"])
    # A fresh 3-epoch run is not this run; the extending command reads it back.
    with pytest.raises(RunRefused, match=r"extended with --extend_run from epochs 1, then 2"):
        plan_run(run, identity(3), result_file="r.json")
    assert plan_run(run, identity(3), result_file="r.json", extend=True).status == "finished"
    os.remove(os.path.join(run, "r.json"))
    assert plan_run(run, identity(3), result_file="r.json", extend=True).status == "resume"
    with pytest.raises(RunRefused, match="can only grow"):
        plan_run(run, identity(2), result_file="r.json", extend=True)
