"""A damaged run directory resumes from what is intact, or is refused in one line.

Claims: a checkpoint whose files were truncated or zeroed (a kill or a full
disk while writing) is set aside and the previous one resumed, ending with
the same variables and metrics as an undamaged resume from that one; a
checkpoint list that cannot be parsed is set aside and rebuilt from the
checkpoints present instead of starting over from step 0; if no checkpoint
can be read the resume is refused and nothing is changed; a torn last line
of metrics.jsonl is cut off into a side file and the run resumes; a missing
metrics.jsonl after completed epochs is refused; a damaged run_identity.json
or result file is named.  Every message is one line naming the files.
"""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from datanas.engine import checkpoints
from datanas.engine.loop import run_loop
from datanas.engine.run_files import RunFileDamaged
from datanas.engine.run_identity import RunPlan, plan_run

import test_engine_loop  # noqa: E402  (tests/ is on the path: the shared test program)


class LinearProgram(test_engine_loop.LinearProgram):
    """The engine tests' least squares with momentum, 3 epochs of 4 steps."""

    def variables(self):
        return [v.numpy() for v in [self.weights, *self.optimizer.variables]]


class Stop(Exception):
    pass


def _stopped_run(directory, stop_at):
    """A run killed before step `stop_at` + 1, checkpointed every 4 steps."""
    program = LinearProgram()
    original = program.train_step

    def killed(index):
        if int(program.state.step.numpy()) == stop_at:
            raise Stop()
        return original(index)

    program.train_step = killed
    with pytest.raises(Stop):
        run_loop(program, str(directory), verbose=0, checkpoint_every_steps=4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: directory}: "two" holds ckpt-4 and ckpt-8 (2 epochs in
    metrics.jsonl); "from4"/"from8" are undamaged resumes of a run with only
    ckpt-4 / of "two" (their final variables and metrics)."""
    root = tmp_path_factory.mktemp("damaged")
    _stopped_run(root / "two", stop_at=8)
    _stopped_run(root / "only4", stop_at=6)
    assert sorted(os.listdir(root / "only4" / "checkpoints"))[-1] == "ckpt-4.index"
    shutil.copytree(root / "two", root / "resumed8")
    references = {}
    for name, directory in (("from4", "only4"), ("from8", "resumed8")):
        program = LinearProgram()
        result = run_loop(program, str(root / directory), verbose=0)
        references[name] = (result.resumed_from_step, program.variables(),
                            [r["train_loss"] for r in result.history])
    return root, references


def _copy(runs, tmp_path):
    root, _ = runs
    shutil.copytree(root / "two", tmp_path / "run")
    return tmp_path / "run"


def _resume_matches(directory, reference):
    program = LinearProgram()
    result = run_loop(program, str(directory), verbose=0)
    step, variables, losses = reference
    assert result.resumed_from_step == step
    for got, want in zip(program.variables(), variables):
        np.testing.assert_array_equal(got, want)
    assert [r["train_loss"] for r in result.history] == losses
    on_disk = [json.loads(line) for line in open(directory / "metrics.jsonl")]
    assert [r["train_loss"] for r in on_disk] == losses
    assert all("\n" not in note for note in result.repairs)
    return result


def _hashes(directory):
    out = {}
    for base, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(base, name), "rb") as handle:
                out[os.path.relpath(os.path.join(base, name), directory)] = \
                    hashlib.sha256(handle.read()).hexdigest()
    return out


def _truncate_data(path):
    data = (path / "checkpoints" / "ckpt-8.data-00000-of-00001").read_bytes()
    (path / "checkpoints" / "ckpt-8.data-00000-of-00001").write_bytes(data[:len(data) // 2])


def _zero(name):
    def damage(path):
        target = path / "checkpoints" / name
        target.write_bytes(b"\0" * target.stat().st_size)
    return damage


def _lost_data(path):
    os.unlink(path / "checkpoints" / "ckpt-8.data-00000-of-00001")


@pytest.mark.parametrize("damage", [_truncate_data, _zero("ckpt-8.index"),
                                    _zero("ckpt-8.data-00000-of-00001"), _lost_data],
                         ids=["truncated_data", "zeroed_index", "zeroed_data", "lost_data"])
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_previous_one_resumed(
        runs, tmp_path, damage):
    directory = _copy(runs, tmp_path)
    damage(directory)
    damaged = {n: (directory / "checkpoints" / n).read_bytes()
               for n in ("ckpt-8.index", "ckpt-8.data-00000-of-00001")
               if (directory / "checkpoints" / n).exists()}
    result = _resume_matches(directory, runs[1]["from4"])
    [note] = result.repairs
    assert "ckpt-8 cannot be read" in note and note.endswith("ckpt-4.")
    for name, content in damaged.items():   # kept, under another name
        assert (directory / "checkpoints" / (name + ".damaged")).read_bytes() == content


def test_a_garbled_checkpoint_list_is_set_aside_and_rebuilt(runs, tmp_path):
    directory = _copy(runs, tmp_path)
    garbled = b'model_checkpoint_path: "ckpt-8"\nall_model_chec\x00\xff{{'
    (directory / "checkpoints" / "checkpoint").write_bytes(garbled)
    result = _resume_matches(directory, runs[1]["from8"])   # not from step 0
    [note] = result.repairs
    assert "checkpoint could not be read" in note and "checkpoint.damaged" in note
    assert "ckpt-4, ckpt-8" in note
    assert (directory / "checkpoints" / "checkpoint.damaged").read_bytes() == garbled


@pytest.mark.parametrize("content", [b"", None], ids=["empty", "missing"])
def test_an_empty_or_missing_checkpoint_list_is_rebuilt(runs, tmp_path, content):
    directory = _copy(runs, tmp_path)
    if content is None:
        os.unlink(directory / "checkpoints" / "checkpoint")
    else:
        (directory / "checkpoints" / "checkpoint").write_bytes(content)
    result = _resume_matches(directory, runs[1]["from8"])
    [note] = result.repairs
    assert "rebuilt from the checkpoint(s) present (ckpt-4, ckpt-8" in note


def test_a_garbled_list_and_a_damaged_latest_checkpoint_resume_the_previous_one(
        runs, tmp_path):
    directory = _copy(runs, tmp_path)
    (directory / "checkpoints" / "checkpoint").write_bytes(b"\xff\xfe garbage {{")
    _truncate_data(directory)
    result = _resume_matches(directory, runs[1]["from4"])
    assert len(result.repairs) == 2


def test_a_restore_failing_for_want_of_memory_sets_nothing_aside(runs, tmp_path, monkeypatch):
    """Only errors about the files mean damage: an out-of-memory restore of
    an intact checkpoint is raised as it is, the checkpoint kept in place."""
    directory = _copy(runs, tmp_path)
    before = _hashes(directory)

    def out_of_memory(checkpoint, path):
        raise tf.errors.ResourceExhaustedError(None, None, f"OOM restoring {path}")

    monkeypatch.setattr(checkpoints, "restore_exactly", out_of_memory)
    with pytest.raises(tf.errors.ResourceExhaustedError, match="ckpt-8"):
        run_loop(LinearProgram(), str(directory), verbose=0)
    assert _hashes(directory) == before


def test_no_readable_checkpoint_is_refused_and_nothing_changes(runs, tmp_path):
    directory = _copy(runs, tmp_path)
    _zero("ckpt-8.index")(directory)
    _zero("ckpt-4.index")(directory)
    before = _hashes(directory)
    with pytest.raises(RunFileDamaged, match=r"none of the 2 checkpoint\(s\) in .*checkpoints "
                       r"can be read \(ckpt-8: .*; ckpt-4: .*\); nothing was set aside") as error:
        run_loop(LinearProgram(), str(directory), verbose=0)
    assert "\n" not in str(error.value)
    assert _hashes(directory) == before


def test_a_torn_last_metrics_line_is_cut_off_and_kept_aside(runs, tmp_path):
    directory = _copy(runs, tmp_path)
    torn = b'{"epoch": 3, "train_lo'   # a kill during the append of epoch 3
    with open(directory / "metrics.jsonl", "ab") as handle:
        handle.write(torn)
    result = _resume_matches(directory, runs[1]["from8"])
    [note] = result.repairs
    assert "metrics.jsonl ended in an incomplete record" in note and "metrics.jsonl.torn" in note
    assert (directory / "metrics.jsonl.torn").read_bytes() == torn


def test_a_damaged_metrics_line_before_the_end_is_refused_by_name(runs, tmp_path):
    directory = _copy(runs, tmp_path)
    lines = (directory / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    (directory / "metrics.jsonl").write_bytes(b"{garbage\n" + lines[1])
    with pytest.raises(RunFileDamaged, match=r"metrics.jsonl line 1 is not a JSON record"):
        run_loop(LinearProgram(), str(directory), verbose=0)


def test_a_missing_metrics_file_after_completed_epochs_is_refused(runs, tmp_path):
    directory = _copy(runs, tmp_path)
    os.unlink(directory / "metrics.jsonl")
    before = _hashes(directory)
    with pytest.raises(RunFileDamaged, match=r"metrics.jsonl is missing but the checkpoint has "
                       r"2 epoch\(s\) completed.*create an empty one"):
        run_loop(LinearProgram(), str(directory), verbose=0)
    assert _hashes(directory) == before
    # the user's choice: continue without the records of epochs 1-2
    (directory / "metrics.jsonl").write_bytes(b"")
    result = run_loop(LinearProgram(), str(directory), verbose=0)
    assert result.resumed_from_step == 8 and [r["epoch"] for r in result.history] == [3]


def test_a_truncated_run_identity_is_named(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "run_identity.json").write_text('{"format": 2, "sett')
    with pytest.raises(RunFileDamaged, match=r"run_identity.json is damaged \(not complete "
                       r"JSON") as error:
        plan_run(str(directory), {"format": 2}, result_file="search_result.json")
    assert str(directory / "run_identity.json") in str(error.value)


def test_a_truncated_result_file_of_a_finished_run_is_named(tmp_path):
    from flags import runs as flags_runs  # pylint: disable=import-outside-toplevel
    (tmp_path / "search_result.json").write_text('{"final": {"valid_acc')
    plan = RunPlan("finished", str(tmp_path), {})
    with pytest.raises(RunFileDamaged, match="search_result.json is damaged.*Move it away and "
                       "rerun the same command") as error:
        flags_runs._report_finished(plan, "search_result.json")  # pylint: disable=protected-access
    assert str(tmp_path / "search_result.json") in str(error.value)
    assert "\n" not in str(error.value)


def test_records_without_a_checkpoint_are_set_aside_when_the_run_starts_over(runs, tmp_path):
    """The user moved the checkpoints away (e.g. after a refusal above): the
    run starts at step 0 and the old records are kept beside the new ones."""
    directory = _copy(runs, tmp_path)
    old = (directory / "metrics.jsonl").read_bytes()
    os.rename(directory / "checkpoints", tmp_path / "moved_away")
    result = run_loop(LinearProgram(), str(directory), verbose=0)
    assert result.resumed_from_step == 0 and len(result.history) == 3
    [note] = result.repairs
    assert "no checkpoint is left to resume" in note and "metrics.jsonl.no-checkpoint" in note
    assert (directory / "metrics.jsonl.no-checkpoint").read_bytes() == old


def test_a_garbled_best_checkpoint_list_is_rebuilt(tmp_path):
    directory = tmp_path / "run"
    program = LinearProgram()
    original = program.train_step

    def killed(index):
        if int(program.state.step.numpy()) == 8:
            raise Stop()
        return original(index)

    program.train_step = killed
    with pytest.raises(Stop):
        run_loop(program, str(directory), verbose=0, select_on="train_loss", select_max=False)
    best = sorted(n for n in os.listdir(directory / "best") if n.endswith(".index"))
    (directory / "best" / "checkpoint").write_bytes(b"\xff garbled {{")
    result = run_loop(LinearProgram(), str(directory), verbose=0, select_on="train_loss",
                      select_max=False)
    [note] = result.repairs
    assert "best/checkpoint could not be read" in note
    assert f"rebuilt from the checkpoint(s) present ({best[-1][:-len('.index')]}" in note
    assert (directory / "best" / "checkpoint.damaged").exists()
    # the rebuilt list is the manager's: the newest best is listed, none is left unmanaged
    state = tf.train.get_checkpoint_state(str(directory / "best"))
    listed = [os.path.basename(p) for p in state.all_model_checkpoint_paths]
    present = sorted(n[:-len(".index")] for n in os.listdir(directory / "best")
                     if n.endswith(".index"))
    assert listed == present


def test_a_trainer_ends_a_refused_resume_with_its_one_line():
    from flags import core as flags_core  # pylint: disable=import-outside-toplevel
    message = "none of the 2 checkpoint(s) in /x/checkpoints can be read (...)"
    with pytest.raises(SystemExit) as stop:
        with flags_core.run_errors("search_cifar"):
            raise RunFileDamaged(message)
    assert stop.value.code == f"search_cifar: error: {message}"


def test_a_torn_random_search_record_is_cut_and_read_back_from_its_checkpoint(
        tmp_path, global_seed, capsys):
    pytest.importorskip("sklearn")
    # pylint: disable=import-outside-toplevel
    from data_tf.image_datasets import load_image_dataset
    from data_tf.search_inputs import make_search_inputs
    from datanas.searching.config import SearchConfig
    from datanas.searching.runs import build_search, run_method_search
    from datanas.spaces.darts_cnn.space import SupernetShape

    global_seed(0)
    dataset = load_image_dataset("digits")
    inputs = make_search_inputs(dataset, batch_size=32, train_size=200, seed=0)
    shape = SupernetShape(num_cells=3, init_channels=4, num_nodes=1,
                          primitives=("none", "max_pool_3x3", "skip_connect"))
    model, config = build_search("random", dataset.num_classes, dataset.image_shape,
                                 SearchConfig(epochs=2, seed=0), shape, random_candidates=2)
    run_method_search("random", model, inputs, config, str(tmp_path), random_candidates=2,
                      verbose=0)
    path = tmp_path / "candidates.jsonl"
    complete = path.read_bytes()
    last = complete.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(complete[:last + 40])   # a kill while candidate 1's record was appended
    capsys.readouterr()
    again = run_method_search("random", model, inputs, config, str(tmp_path),
                              random_candidates=2, verbose=0)
    err = capsys.readouterr().err
    assert "candidates.jsonl ended in an incomplete record" in err
    assert (tmp_path / "candidates.jsonl.torn").read_bytes() == complete[last:last + 40]

    def without_time(records):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    before = [json.loads(line) for line in complete.splitlines()]
    after = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert without_time(after) == without_time(before)
    assert again.final["best_candidate"] == max(before, key=lambda r: r["valid_accuracy"])[
        "candidate"]
