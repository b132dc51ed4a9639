"""The engine's run loop on a toy program: exact resume, non-finite stops.

Claims: a run interrupted after any step and resumed ends with the same
variables and metrics as an uninterrupted one; a non-finite loss stops the
run with an error naming the step, before anything is checkpointed, and the
last good checkpoint still resumes; result files are readable by others.
"""

import json
import os
import signal
import stat
import threading

import numpy as np
import pytest
import tensorflow as tf

from datanas.engine.loop import NonFiniteError, Program, RunPreempted, RunState, run_loop
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


class SignalledProgram(LinearProgram):
    """Sends itself SIGTERM inside its `signal_in_call`-th train_step of this
    process, before the step's work (as if during the first step's graph
    build) and keeps working in Python afterwards."""

    def __init__(self, signal_in_call):
        super().__init__()
        self.signal_in_call, self.calls = signal_in_call, 0

    def train_step(self, index):
        self.calls += 1
        if self.calls == self.signal_in_call:
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(10000))   # the interpreter runs the handler here
        return super().train_step(index)


needs_main_thread = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers are installed from the main thread only")


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


@needs_main_thread
def test_sigterm_before_the_first_step_finishes_stops_at_once_and_loses_nothing(tmp_path):
    """A stop during the first step (the graph build) needs no checkpoint:
    the loop stops inside the step, not after it, and the run resumes from
    where it was to the uninterrupted result."""
    reference = LinearProgram()
    run_loop(reference, str(tmp_path / "ref"), verbose=0)
    directory = str(tmp_path / "run")
    fresh = SignalledProgram(signal_in_call=1)
    with pytest.raises(RunPreempted, match="first step.*no checkpoint yet.*rerun") as stop:
        run_loop(fresh, directory, verbose=0, checkpoint_every_steps=1)
    assert "\n" not in str(stop.value)
    assert int(fresh.state.step.numpy()) == 0, "the step ran although the stop came first"
    assert tf.train.latest_checkpoint(os.path.join(directory, "checkpoints")) is None

    # killed between steps 5 and 6, then stopped during the resumed process's first step
    first = LinearProgram()
    original = first.train_step

    def killed_after_step_5(index):
        if int(first.state.step.numpy()) == 5:
            raise Stop()
        return original(index)

    first.train_step = killed_after_step_5
    with pytest.raises(Stop):
        run_loop(first, directory, verbose=0, checkpoint_every_steps=1)
    resumed = SignalledProgram(signal_in_call=1)
    with pytest.raises(RunPreempted, match="checkpoint at step 5 is kept"):
        run_loop(resumed, directory, verbose=0, checkpoint_every_steps=1)
    assert tf.train.latest_checkpoint(os.path.join(directory, "checkpoints")).endswith("ckpt-5")

    final = LinearProgram()
    assert run_loop(final, directory, verbose=0).resumed_from_step == 5
    np.testing.assert_array_equal(final.weights.numpy(), reference.weights.numpy())


@needs_main_thread
def test_sigterm_after_a_finished_step_checkpoints_it_first(tmp_path):
    directory = str(tmp_path / "run")
    program = SignalledProgram(signal_in_call=3)
    with pytest.raises(RunPreempted, match="checkpoint saved at step 3"):
        run_loop(program, directory)   # no step checkpoints: the stop saves step 3
    assert tf.train.latest_checkpoint(os.path.join(directory, "checkpoints")).endswith("ckpt-3")
    assert run_loop(LinearProgram(), directory, verbose=0).resumed_from_step == 3


@needs_main_thread
def test_a_stop_swallowed_during_the_first_step_still_checkpoints_at_the_boundary(tmp_path):
    """If code inside the first step catches the handler's exception (as
    tracing code may), the flag still stops the run at the next step
    boundary, and the message says the checkpoint was saved."""
    program = LinearProgram()
    original = program.train_step

    def swallowing_first_step(index):
        if int(program.state.step.numpy()) == 0:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(10000))
            except RunPreempted:
                pass
        return original(index)

    program.train_step = swallowing_first_step
    directory = str(tmp_path / "run")
    with pytest.raises(RunPreempted, match="checkpoint saved at step 1"):
        run_loop(program, directory, verbose=0)
    assert tf.train.latest_checkpoint(os.path.join(directory, "checkpoints")).endswith("ckpt-1")


@needs_main_thread
def test_a_stop_during_tf_function_tracing_gives_the_one_line_message(tmp_path):
    """Raised while a tf.function traces (a search's graph build), the stop
    arrives wrapped in autograph's 'in user code' stack; the loop re-raises
    its own one line."""
    program = LinearProgram()
    original = program.train_step

    @tf.function
    def build(x):
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(10000))
        return x

    def traced_first_step(index):
        build(tf.constant(0.0))
        return original(index)

    program.train_step = traced_first_step
    with pytest.raises(RunPreempted, match="first step.*no checkpoint yet") as stop:
        run_loop(program, str(tmp_path / "run"), verbose=0)
    assert "\n" not in str(stop.value) and "user code" not in str(stop.value)
