"""THE run loop: epochs of steps with exact resume, used by every kind of run.

Search, each random-search candidate and training are all a ``Program``
driven by ``run_loop``.  The loop owns what every run needs:

* a ``RunState`` (step counter, completed epochs, sums of the running
  epoch's metrics) checkpointed with the program's own objects, so a run
  killed mid-epoch resumes at the next step with the same epoch means;
* step-level checkpoints (``tf.train.CheckpointManager``) every
  ``checkpoint_every_steps`` and at every epoch end, restored only into an
  identical state (``restore_exactly``);
* SIGTERM (cluster preemption): checkpoint at the next step boundary, then
  ``RunPreempted``; before the process's first step has finished (the
  graph build, minutes for a large supernet) there is nothing new to save,
  so it stops at once with ``RunPreempted``;
* ``metrics.jsonl`` (one line per epoch; lines written after the last
  checkpoint are dropped on resume), TensorBoard scalars (and the program's
  own ``summaries``), a progress bar;
* optionally the best checkpoint by a validation metric (``select_on``);
* resuming a damaged directory (a kill or a full disk while writing): a
  checkpoint list or checkpoint that cannot be read is set aside and the
  newest readable checkpoint resumed (``restore_newest_readable``); a torn
  last line of ``metrics.jsonl`` (a kill during its append) is cut off into
  ``metrics.jsonl.torn``; each is one line on stderr (``LoopResult.repairs``).
  A ``metrics.jsonl`` missing while the checkpoint has completed epochs is
  refused (``RunFileDamaged``): their records cannot be rebuilt, so the user
  puts the file back, or creates an empty one to continue without them.
  Records no checkpoint covers (the checkpoints moved away) are set aside as
  ``metrics.jsonl.no-checkpoint`` when the run starts at step 0;
* a non-finite training metric (any step) or end-of-epoch metric (the
  program's ``end_epoch``: a validation loss or perplexity) stops the run
  with ``NonFiniteError`` before the step's checkpoint or the epoch's record
  and checkpoint are written;
* a checkpoint or run file that cannot be written (a full disk) stops the
  run with ``RunWriteFailed`` naming it and the last complete checkpoint,
  which a rerun resumes (``checkpoints.save_checkpoint``, ``run_files``).

``tf.distribute.experimental.PreemptionCheckpointHandler`` was evaluated for
the SIGTERM part.  It runs on one-device and mirrored strategies (local
mode), but it restores the checkpoint itself (``restore_or_initialize``,
bypassing ``restore_exactly``'s refusal of another architecture's
checkpoint), adds its own counter variable to the checkpoint, and ends the
process through its ``exit_fn`` (default exit code 42) from inside its
``run`` wrapper.  The loop keeps a small SIGTERM flag checked at step
boundaries instead: checkpoint at the next step, ``RunPreempted``, and the
trainers exit with 143, the same on every strategy.
"""

import dataclasses
import math
import numbers
import os
import signal
import sys
import threading
import time

import tensorflow as tf

from datanas.core.allocator import keep_malloc_thresholds
from datanas.engine.checkpoints import (repair_checkpoint_list, restore_newest_readable,
                                       save_checkpoint)
from datanas.engine.progress import epoch_progbar
from datanas.engine.run_files import (RunFileDamaged, append_jsonl, cut_torn_tail, json_text,
                                      read_jsonl, set_aside, write_text_atomic)

__all__ = ["RunState", "Program", "RunPreempted", "NonFiniteError", "LoopResult", "run_loop"]


class RunPreempted(Exception):
    """Raised after a SIGTERM once the run state has been checkpointed."""


class NonFiniteError(ArithmeticError):
    """A step or an epoch's evaluation gave a non-finite metric or variable;
    nothing was checkpointed after the last good state."""


class RunState(tf.Module):
    """Step counter, completed epochs and the running epoch's metric sums.

    Create it inside the strategy's scope (``Program`` subclasses do).
    """

    def __init__(self, metric_names):
        super().__init__(name="run_state")
        self.metric_names = tuple(metric_names)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epochs_completed = tf.Variable(0, dtype=tf.int64, trainable=False,
                                            name="epochs_completed")
        self.batches = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="batches")
        self.sums = {name: tf.Variable(0.0, dtype=tf.float64, trainable=False, name=name)
                     for name in self.metric_names}

    def add(self, metrics):
        for name, value in metrics.items():
            self.sums[name].assign_add(tf.cast(value, tf.float64))
        self.batches.assign_add(1.0)

    def means(self):
        batches = max(float(self.batches.numpy()), 1.0)
        return {f"train_{name}": float(v.numpy()) / batches for name, v in self.sums.items()}

    def reset_epoch(self):
        self.batches.assign(0.0)
        for variable in self.sums.values():
            variable.assign(0.0)

    def reset(self):
        self.reset_epoch()
        self.step.assign(0)
        self.epochs_completed.assign(0)


class Program:
    """What a run does; the loop calls these in order.

    Attributes to set: ``state`` (RunState), ``epochs``, ``steps_per_epoch``.
    """

    state = None
    epochs = 1
    steps_per_epoch = 1

    def checkpoint_objects(self):
        """{name: trackable} saved with the run state (model, optimizers...)."""
        raise NotImplementedError

    def begin_epoch(self, epoch):
        """Per-epoch settings (temperature, drop-path...); returns them for the record."""
        del epoch
        return {}

    def batches(self, epoch, skip):
        """The epoch's (distributed) training batches after the first `skip` steps."""
        raise NotImplementedError

    def train_step(self, batch):
        """Runs one step and advances ``state.step`` (inside the compiled step,
        so the counter the step's seeds read moves with it); returns
        {metric: value} means over the global batch."""
        raise NotImplementedError

    def end_epoch(self, epoch):
        """Evaluation and other per-epoch entries of the metrics record."""
        del epoch
        return {}

    def summaries(self, epoch):
        """Extra TensorBoard summaries of the epoch (images...), written after
        its scalars with the loop's writer as default (step = epoch + 1)."""
        del epoch

    def non_finite_variables(self):
        """Names of watched variables (e.g. architecture logits) holding NaN or
        inf; checked before every checkpoint."""
        return []


@dataclasses.dataclass
class LoopResult:
    history: list
    last_record: dict
    best_value: float | None
    resumed_from_step: int
    repairs: list = dataclasses.field(default_factory=list)


class _TerminationFlag:
    """Records SIGTERM (cluster preemption) instead of dying mid-step.

    While ``stop_at_once`` holds a message (set while nothing would be lost:
    before the process's first step has finished), the handler raises
    ``RunPreempted`` with it instead.  Python runs the handler when control
    returns to the interpreter, i.e. during tracing at once and after a C++
    graph optimisation has finished; ``raised`` stays the fallback if the
    exception is swallowed on the way (the next step boundary acts on it).
    """

    def __init__(self):
        self.raised = False
        self.stop_at_once = None
        self.stopped_at_once = None
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.raised = True
        if self.stop_at_once is not None:
            self.stopped_at_once, self.stop_at_once = self.stop_at_once, None
            raise RunPreempted(self.stopped_at_once)

    def __exit__(self, exc_type, exc, traceback):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        if exc_type is not None and issubclass(exc_type, RunPreempted) and self.stopped_at_once:
            # raised inside a tf.function's tracing, the message arrives wrapped
            # in the traced code's stack; the user needs the one line
            raise RunPreempted(self.stopped_at_once) from None


def _completed_history(metrics_path, epochs_completed, repairs):
    """Metrics of the epochs a checkpoint covers (drops lines written after it,
    and a torn last line, noted in `repairs`)."""
    if not os.path.exists(metrics_path):
        if epochs_completed:
            raise RunFileDamaged(
                f"{metrics_path} is missing but the checkpoint has {epochs_completed} epoch(s) "
                "completed, whose records cannot be rebuilt: put the file back, or create an "
                "empty one to continue without them.")
        return []
    torn = cut_torn_tail(metrics_path)
    if torn:
        repairs.append(f"{metrics_path} ended in an incomplete record (a kill while it was "
                       f"written): cut back to its last complete record, the cut bytes are "
                       f"kept in {torn}.")
        print(repairs[-1], file=sys.stderr, flush=True)
    history = [r for r in read_jsonl(metrics_path) if r["epoch"] <= epochs_completed]
    write_text_atomic(metrics_path, "".join(json_text(r) + "\n" for r in history))
    return history


def _check_variables(program, step, model_dir):
    bad = program.non_finite_variables()
    if bad:
        raise NonFiniteError(f"step {step} of {model_dir} left non-finite values in "
                             + ", ".join(bad[:5]) + ("..." if len(bad) > 5 else "")
                             + "; the last good checkpoint is kept: lower the learning rate(s) "
                             "and rerun to resume.")


def _check_evaluation(evaluated, epoch, model_dir, manager):
    """NonFiniteError naming the non-finite numbers of an epoch's evaluation
    (``end_epoch``: e.g. a validation loss or perplexity)."""
    bad = [k for k, v in evaluated.items()
           if isinstance(v, numbers.Real) and not math.isfinite(v)]
    if bad:
        kept = (f"the last checkpoint, {manager.latest_checkpoint}, is kept"
                if manager.latest_checkpoint else "the run has no checkpoint yet")
        raise NonFiniteError(
            f"epoch {epoch + 1} of {model_dir} gave non-finite "
            + ", ".join(f"{k}={evaluated[k]}" for k in bad) + ": its record and checkpoint "
            f"were not written ({kept}); the model diverges on held-out data: lower the "
            "learning rate(s) or use more data, in a new --model_dir.")


def _format(record, keys):
    return " ".join(f"{k}={record[k]:.4f}" for k in keys
                    if isinstance(record.get(k), float))


def run_loop(program, model_dir, *, verbose=1, checkpoint_every_steps=0,
             select_on=None, select_max=True, max_to_keep=2, log_keys=None, callbacks=None):
    """Runs `program` to its last epoch in `model_dir`, resuming if checkpointed.

    Args:
      program: a Program.
      model_dir: this process's run directory (created).  The program's
        steps carry their distribution strategy; the loop needs none.
      verbose: 0 silent, 1 epoch lines and a progress bar, 2 also checkpoints.
      checkpoint_every_steps: also checkpoint every N steps (0 = epoch ends).
      select_on: a record key (e.g. "valid_accuracy"); the checkpoint with its
        best value is kept under ``best/``.
      select_max: the best value is the highest (else the lowest, e.g. a
        perplexity).
      log_keys: record keys printed at each epoch end (default: all floats
        not starting with "train_").
      callbacks: objects with Keras' ``on_epoch_end(epoch, logs)`` (e.g.
        ``keras.callbacks.Callback``), called with the 0-based epoch and a
        copy of its record once the epoch is checkpointed, so a callback
        that raises loses no work.
    Returns:
      LoopResult.
    Raises:
      RunPreempted: after a SIGTERM, once the state is checkpointed.
      CheckpointMismatchError: the directory's checkpoint is of another model.
      RunFileDamaged: no checkpoint can be read, a metrics line is damaged,
        or metrics.jsonl is missing after completed epochs (one line).
      NonFiniteError: a step or an epoch's evaluation gave a non-finite
        metric, or left non-finite watched variables (one line).
      RunWriteFailed: a checkpoint or file could not be written (a full
        disk); the last complete checkpoint is intact (one line).
    """
    keep_malloc_thresholds()   # before any distributed dataset pages every step (allocator.py)
    os.makedirs(model_dir, exist_ok=True)
    state = program.state
    sign = 1.0 if select_max else -1.0   # best_value holds sign * value
    best_value = tf.Variable(float("-inf"), dtype=tf.float64, trainable=False,
                             name="best_value")
    checkpoint = tf.train.Checkpoint(run_state=state, best_value=best_value,
                                     **program.checkpoint_objects())
    # before the managers read their lists: damaged files are set aside
    restored, repairs = restore_newest_readable(checkpoint,
                                                os.path.join(model_dir, "checkpoints"))
    if select_on:
        repairs += [n for n in [repair_checkpoint_list(os.path.join(model_dir, "best"), "best")]
                    if n]
    for note in repairs:
        print(note, file=sys.stderr, flush=True)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, "checkpoints"),
                                         max_to_keep=max_to_keep, step_counter=state.step)
    best = (tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, "best"),
                                       max_to_keep=1, checkpoint_name="best")
            if select_on else None)
    metrics_path = os.path.join(model_dir, "metrics.jsonl")
    history = []
    if restored:
        history = _completed_history(metrics_path, int(state.epochs_completed.numpy()), repairs)
        if verbose:
            print(f"Resuming from {restored}: step {int(state.step.numpy())}, "
                  f"{int(state.epochs_completed.numpy())} epoch(s) completed.", flush=True)
    elif os.path.exists(metrics_path) and os.path.getsize(metrics_path):
        # records no checkpoint covers (a kill before the first one, or the
        # checkpoints were moved away): kept, the run starts at step 0
        aside = set_aside(metrics_path, ".no-checkpoint")
        repairs.append(f"{metrics_path} holds records but no checkpoint is left to resume: set "
                       f"aside as {aside}; the run starts at step 0.")
        print(repairs[-1], file=sys.stderr, flush=True)
    resumed_from = int(state.step.numpy())
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "tensorboard"))
    steps_per_epoch = program.steps_per_epoch
    with _TerminationFlag() as terminated:
        terminated.stop_at_once = (
            f"SIGTERM before this process finished its first step (the graph build): nothing "
            f"new to save in {model_dir} ("
            + (f"its checkpoint at step {resumed_from} is kept" if manager.latest_checkpoint
               else "no checkpoint yet") + "); rerun the same command to resume.")
        for epoch in range(int(state.epochs_completed.numpy()), program.epochs):
            settings = program.begin_epoch(epoch)
            done = int(state.step.numpy()) - epoch * steps_per_epoch
            if done == 0:
                state.reset_epoch()
            if verbose:
                extra = "".join(f", {k} {v:.3f}" for k, v in settings.items())
                print(f"Epoch {epoch + 1}/{program.epochs}" + (f" ({extra[2:]})" if extra
                                                                else ""), flush=True)
            progbar = epoch_progbar(steps_per_epoch, verbose)
            started = time.time()
            count = done
            for batch in program.batches(epoch, done):
                metrics = {k: float(v) for k, v in program.train_step(batch).items()}
                # a finished step: from now on a stop saves it first (and a stop
                # raised during the step but swallowed on the way is void)
                terminated.stop_at_once = terminated.stopped_at_once = None
                bad = [k for k, v in metrics.items() if not math.isfinite(v)]
                if bad:
                    raise NonFiniteError(
                        f"step {int(state.step.numpy())} of {model_dir} gave non-finite "
                        + ", ".join(f"{k}={metrics[k]}" for k in bad) + "; the last good "
                        "checkpoint is kept: lower the learning rate(s) and rerun to resume.")
                state.add(metrics)
                count += 1
                if progbar is not None:
                    progbar.update(count, values=[(k[len("train_"):], v)
                                                  for k, v in state.means().items()])
                step = int(state.step.numpy())
                if terminated.raised:
                    _check_variables(program, step, model_dir)
                    save_checkpoint(manager, step)
                    raise RunPreempted(f"SIGTERM: checkpoint saved at step {step} in "
                                       f"{model_dir}; rerun the same command to resume.")
                if checkpoint_every_steps and step % checkpoint_every_steps == 0:
                    _check_variables(program, step, model_dir)
                    save_checkpoint(manager, step)
                    if verbose > 1:
                        print(f"checkpoint saved at step {step}", flush=True)
            record = {"epoch": epoch + 1, **settings, **state.means()}
            evaluated = program.end_epoch(epoch)
            _check_evaluation(evaluated, epoch, model_dir, manager)
            record.update(evaluated)
            record["epoch_seconds"] = time.time() - started
            _check_variables(program, int(state.step.numpy()), model_dir)
            history.append(record)
            append_jsonl(metrics_path, record)
            state.epochs_completed.assign(epoch + 1)
            if best is not None and sign * record[select_on] > float(best_value.numpy()):
                best_value.assign(sign * record[select_on])
                save_checkpoint(best, epoch + 1, last=manager.latest_checkpoint)
            save_checkpoint(manager, int(state.step.numpy()))
            # (TensorBoard's writer logs a failed write itself and goes on)
            with writer.as_default(step=epoch + 1):
                for key, value in record.items():
                    if key != "epoch" and isinstance(value, (int, float)):
                        # float64 in: a huge value (a diverged perplexity)
                        # becomes inf in TensorBoard instead of an error.
                        tf.summary.scalar(key, tf.constant(float(value), tf.float64))
                program.summaries(epoch)
            if verbose:
                keys = log_keys or [k for k in record if not k.startswith("train_")
                                    and k not in ("epoch", "epoch_seconds") and k not in settings]
                print("  " + _format(record, keys), flush=True)
            for callback in callbacks or ():
                callback.on_epoch_end(epoch, dict(record))
    writer.flush()
    return LoopResult(history=history, last_record=history[-1] if history else {},
                      best_value=sign * float(best_value.numpy()) if select_on else None,
                      resumed_from_step=resumed_from, repairs=repairs)
