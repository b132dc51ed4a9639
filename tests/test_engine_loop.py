"""The engine's run loop on a toy program: exact resume, non-finite stops.

Claims: a run interrupted after any step and resumed ends with the same
variables and metrics as an uninterrupted one; a non-finite loss stops the
run with an error naming the step, before anything is checkpointed, and the
last good checkpoint still resumes; result files are readable by others.
"""

import json
import os
import stat

import numpy as np
import pytest
import tensorflow as tf

from datanas.engine.loop import NonFiniteError, Program, RunState, run_loop
from datanas.engine.run_files import write_json_atomic


class LinearProgram(Program):
    """Least squares on a fixed data set, one batch per step."""

    def __init__(self, epochs=3, steps_per_epoch=4, poison_at=None):
        self.weights = tf.Variable(tf.zeros([3]), name="weights")
        self.optimizer = tf.keras.optimizers.SGD(0.1, momentum=0.9)
        self.optimizer.build([self.weights])
        self.state = RunState(["loss"])
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.poison_at = poison_at
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(epochs * steps_per_epoch, 8, 3)).astype("float32")
        self.y = self.x @ np.array([1.0, -2.0, 0.5], "float32")

    def checkpoint_objects(self):
        return {"weights": self.weights, "optimizer": self.optimizer}

    def batches(self, epoch, skip):
        for step in range(skip, self.steps_per_epoch):
            yield epoch * self.steps_per_epoch + step

    def train_step(self, index):
        x, y = self.x[index], self.y[index]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((tf.linalg.matvec(x, self.weights) - y) ** 2)
        self.optimizer.apply_gradients([(tape.gradient(loss, self.weights), self.weights)])
        if self.poison_at is not None and int(self.state.step.numpy()) + 1 == self.poison_at:
            loss = loss * float("nan")   # a diverged step
        self.state.step.assign_add(1)
        return {"loss": loss}

    def end_epoch(self, epoch):
        return {"weight_norm": float(tf.norm(self.weights))}


class Stop(Exception):
    pass


def test_resume_after_any_step_matches_uninterrupted(tmp_path):
    reference = LinearProgram()
    run_loop(reference, str(tmp_path / "ref"), verbose=0)
    for stop_after in (2, 5, 8):
        directory = str(tmp_path / f"stop{stop_after}")
        program = LinearProgram()
        original = program.train_step

        def interrupted(index, program=program, original=original, stop_after=stop_after):
            if int(program.state.step.numpy()) == stop_after:
                raise Stop()
            return original(index)

        program.train_step = interrupted
        with pytest.raises(Stop):
            run_loop(program, directory, verbose=0, checkpoint_every_steps=1)
        resumed = LinearProgram()
        result = run_loop(resumed, directory, verbose=0)
        np.testing.assert_array_equal(resumed.weights.numpy(), reference.weights.numpy())
        history = [json.loads(line) for line in open(os.path.join(directory, "metrics.jsonl"))]
        reference_history = [json.loads(line)
                             for line in open(tmp_path / "ref" / "metrics.jsonl")]
        assert [h["train_loss"] for h in history] == [h["train_loss"] for h in reference_history]
        assert result.resumed_from_step == stop_after


def test_non_finite_loss_stops_before_checkpointing_and_the_run_still_resumes(tmp_path):
    directory = str(tmp_path / "run")
    program = LinearProgram(poison_at=7)
    with pytest.raises(NonFiniteError, match=r"step 7\b.*loss"):
        run_loop(program, directory, verbose=0, checkpoint_every_steps=3)
    checkpoint = tf.train.latest_checkpoint(os.path.join(directory, "checkpoints"))
    assert checkpoint.endswith("ckpt-6")
    saved = tf.train.load_checkpoint(checkpoint).get_tensor(
        "weights/.ATTRIBUTES/VARIABLE_VALUE")
    assert np.all(np.isfinite(saved))
    # After the user changes what diverged, the last good checkpoint resumes.
    result = run_loop(LinearProgram(), directory, verbose=0)
    assert result.resumed_from_step == 6 and len(result.history) == 3


def test_result_files_are_readable_like_normal_files(tmp_path):
    path = tmp_path / "result.json"
    write_json_atomic(path, {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask
