"""Non-finite numbers never reach a run's files as NaN/Infinity.

Claims: the run-file writers write strict JSON (a NaN or infinite float is
null, readable by any JSON parser); a non-finite validation metric ends the
run in one line before the epoch's record or checkpoint is written, and the
run still resumes from its last checkpoint; a recurrent search whose --bptt
is longer than a row of its validation stream is refused before anything is
built or written, in one line naming the sizes and what is allowed.
"""

import json
import math
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from datanas.engine.loop import NonFiniteError, run_loop
from datanas.engine.run_files import append_jsonl, json_text, read_jsonl, write_json_atomic

import test_engine_loop  # noqa: E402  (tests/ is on the path: the shared test program)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _strict(text):
    """json.loads that refuses NaN, Infinity and -Infinity, as strict readers do."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_run_files_hold_null_for_nan_and_infinity(tmp_path):
    record = {"valid_loss": float("nan"), "valid_perplexity": float("inf"),
              "nested": {"low": float("-inf"), "values": [1.5, float("nan"), (2, float("inf"))]},
              "epoch": 1, "ok": 0.25}
    expected = {"valid_loss": None, "valid_perplexity": None,
                "nested": {"low": None, "values": [1.5, None, [2, None]]}, "epoch": 1, "ok": 0.25}
    write_json_atomic(tmp_path / "result.json", record)
    assert _strict((tmp_path / "result.json").read_text()) == expected
    append_jsonl(tmp_path / "metrics.jsonl", record)
    append_jsonl(tmp_path / "metrics.jsonl", {"epoch": 2, "valid_loss": 3.0})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [_strict(line) for line in lines] == [expected, {"epoch": 2, "valid_loss": 3.0}]
    assert read_jsonl(tmp_path / "metrics.jsonl")[0] == expected
    assert _strict(json_text(record)) == expected


class DivergingValidation(test_engine_loop.LinearProgram):
    """The engine tests' least squares whose validation is non-finite at `epoch`."""

    def __init__(self, bad_epoch=None, **kwargs):
        super().__init__(**kwargs)
        self.bad_epoch = bad_epoch

    def end_epoch(self, epoch):
        record = {**super().end_epoch(epoch), "valid_loss": 0.5 + epoch,
                  "valid_perplexity": math.exp(0.5 + epoch)}
        if epoch == self.bad_epoch:
            record.update(valid_loss=float("nan"), valid_perplexity=float("inf"))
        return record


def test_a_non_finite_validation_metric_stops_before_the_epoch_is_written(tmp_path):
    directory = tmp_path / "run"
    with pytest.raises(NonFiniteError) as stop:
        run_loop(DivergingValidation(bad_epoch=1), str(directory), verbose=0,
                 select_on="valid_perplexity", select_max=False)
    checkpoints = directory / "checkpoints"
    assert str(stop.value) == (
        f"epoch 2 of {directory} gave non-finite valid_loss=nan, valid_perplexity=inf: its "
        f"record and checkpoint were not written (the last checkpoint, {checkpoints / 'ckpt-4'}"
        ", is kept); the model diverges on held-out data: lower the learning rate(s) or use "
        "more data, in a new --model_dir.")
    assert [_strict(line)["epoch"] for line in
            (directory / "metrics.jsonl").read_text().splitlines()] == [1]
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-4")
    assert tf.train.latest_checkpoint(str(directory / "best")).endswith("best-1")
    # a trainer ends with that one line
    from flags import core as flags_core  # pylint: disable=import-outside-toplevel
    with pytest.raises(SystemExit) as exit_:
        with flags_core.run_errors("train_ptb"):
            raise stop.value
    assert exit_.value.code == f"train_ptb: error: {stop.value}"
    # the checkpoint before it still resumes (once what diverged is changed)
    result = run_loop(DivergingValidation(), str(directory), verbose=0,
                      select_on="valid_perplexity", select_max=False)
    assert result.resumed_from_step == 4 and [r["epoch"] for r in result.history] == [1, 2, 3]


def test_a_bptt_longer_than_a_validation_row_is_refused_up_front(ptb_dir, tmp_path):
    """300 validation tokens (the last 10% of 3,000) in 4 rows are rows of 75
    tokens: windows of at most 74 steps, not 80."""
    model_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.search_ptb", f"--data_dir={ptb_dir}",
         f"--model_dir={model_dir}", "--epochs=1", "--nodes=3", "--hidden_size=16",
         "--batch_size=8", "--bptt=80", "--train_tokens=3000", "--eval_batch_size=4",
         "--seed=4", "--M=3"], cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "search_ptb: error: --bptt=80 is longer than a row of the validation stream: its 300 "
        "tokens in --eval_batch_size=4 rows give 75 tokens per row, i.e. windows of at most 74 "
        "steps; use --bptt<=74, a smaller --eval_batch_size or more --train_tokens (the "
        "validation stream is their last 10%).")
    assert not model_dir.exists()
