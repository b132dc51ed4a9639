"""Restoring a checkpoint only into the state it was written from.

``tf.train.Checkpoint.restore`` matches variables by their path in the
object graph; a checkpoint of another architecture either fails deep inside
TensorFlow (a shape error naming one tensor) or, worse, restores part of
the state and leaves the rest at its initial values.  ``restore_exactly``
compares every variable path and shape first and refuses any difference
with one message, before anything is assigned.

The paths are stable because every sub-layer of our networks is an
attribute (see ``datanas.core.tracking.LayerList``), never an auto-numbered
layer name.

``restore_newest_readable`` resumes a ``tf.train.CheckpointManager``
directory that was damaged (a kill or a full disk while writing): a list
file (``checkpoint``) that cannot be parsed, or is missing while
checkpoints are present, is set aside and rebuilt from the ``<name>-N.index``
files present; a checkpoint that cannot be read (truncated or zeroed
``.index``/``.data``) has its files set aside and the previous one is
restored into the same objects (every variable is assigned again, so
nothing of the failed attempt remains).  Each of these is one line for the
user.  If no checkpoint can be read, ``RunFileDamaged`` refuses the resume
(nothing set aside): a run never starts over its existing checkpoints.

``save_checkpoint`` saves through a manager; a save that fails (a full disk:
TensorFlow's ``ResourceExhaustedError``, or any other ``OpError``/``OSError``
of its writer) is one line (``RunWriteFailed``) naming the checkpoint and the
last complete one, which is intact: the manager lists a checkpoint only
after all of its files are written.
"""

import os
import re
import shutil

import keras
import tensorflow as tf
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

from datanas.engine.run_files import RunFileDamaged, set_aside, write_failed, write_text_atomic

__all__ = ["CheckpointMismatchError", "expected_checkpoint_shapes", "restore_exactly",
           "repair_checkpoint_list", "restore_newest_readable", "save_checkpoint"]

#: The CheckpointManager's list of checkpoints in its directory.
STATE_FILE = "checkpoint"

#: Errors of a restore that say nothing about the files (memory, access,
#: interruption): raised as they are, the checkpoint is not set aside.
_NOT_DAMAGE = (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError,
               tf.errors.UnavailableError, tf.errors.CancelledError,
               tf.errors.DeadlineExceededError, tf.errors.AbortedError,
               tf.errors.UnauthenticatedError)

_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


class CheckpointMismatchError(ValueError):
    """The checkpoint was written by a different model or run state."""


def _escape(name):
    # TensorFlow's escaping of object-graph names inside checkpoint keys.
    return name.replace(".", "..").replace("/", ".S")


def expected_checkpoint_shapes(root):
    """{checkpoint key: shape} of every variable reachable from `root`."""
    view = tf.train.TrackableView(root)
    seen, queue, shapes = {id(root)}, [(root, "")], {}
    while queue:
        obj, path = queue.pop(0)
        for name, child in view.children(obj).items():
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_path = f"{path}/{_escape(name)}" if path else _escape(name)
            if isinstance(child, (tf.Variable, keras.Variable)):
                shapes[child_path + _VALUE_SUFFIX] = tuple(child.shape)
            else:
                queue.append((child, child_path))
    return shapes


def _readable(key):
    return key[:-len(_VALUE_SUFFIX)] if key.endswith(_VALUE_SUFFIX) else key


def _differences(saved, expected, limit=4):
    # The checkpoint's own save counter is bookkeeping, not model state.
    saved = {k: v for k, v in saved.items() if not k.startswith("save_counter/")}
    expected = {k: v for k, v in expected.items() if not k.startswith("save_counter/")}
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(k for k in set(saved) - set(expected) if k.endswith(_VALUE_SUFFIX))
    reshaped = sorted(k for k in set(saved) & set(expected) if tuple(saved[k]) != expected[k])
    parts = []
    if reshaped:
        shown = ", ".join(f"{_readable(k)} {tuple(saved[k])} in the checkpoint vs "
                          f"{expected[k]} now" for k in reshaped[:limit])
        parts.append(f"{len(reshaped)} variable(s) of another shape ({shown}"
                     + (", ..." if len(reshaped) > limit else "") + ")")
    if missing:
        parts.append(f"{len(missing)} variable(s) missing from the checkpoint ("
                     + ", ".join(_readable(k) for k in missing[:limit])
                     + (", ..." if len(missing) > limit else "") + ")")
    if unexpected:
        parts.append(f"{len(unexpected)} checkpoint variable(s) the model does not have ("
                     + ", ".join(_readable(k) for k in unexpected[:limit])
                     + (", ..." if len(unexpected) > limit else "") + ")")
    return parts


def restore_exactly(checkpoint, path):
    """Restores `path` into `checkpoint` only if every variable matches.

    Raises:
      CheckpointMismatchError: naming the variables that differ in shape,
        are missing, or are left over (e.g. a checkpoint of another
        architecture, or one written before the cells were tracked).
    """
    saved = dict(tf.train.list_variables(path))
    parts = _differences(saved, expected_checkpoint_shapes(checkpoint))
    if parts:
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match this model: " + "; ".join(parts) + ".")
    # Every variable was matched above; the save counter may be absent from
    # files written by Checkpoint.write.
    checkpoint.restore(path).expect_partial()


def _first_line(error, limit=160):
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[:limit] + "..."


def _present(directory, name):
    """Prefixes of the `name`-N checkpoints with an .index file, oldest first."""
    pattern = re.compile(re.escape(name) + r"-(\d+)\.index$")
    found = sorted((int(m.group(1)), m.group(0)[:-len(".index")])
                   for m in map(pattern.match, os.listdir(directory)) if m)
    return [prefix for _, prefix in found]


def _write_state(directory, paths, timestamps, last_preserved):
    state = CheckpointState(model_checkpoint_path=paths[-1], all_model_checkpoint_paths=paths,
                            all_model_checkpoint_timestamps=timestamps,
                            last_preserved_timestamp=last_preserved)
    write_text_atomic(os.path.join(directory, STATE_FILE), text_format.MessageToString(state))


def repair_checkpoint_list(directory, name="ckpt"):
    """Makes `directory`'s checkpoint list readable before a CheckpointManager reads it.

    A list file that cannot be parsed (or names no checkpoint) is set aside
    as ``checkpoint.damaged[-<n>]``; it, or a missing one, is rebuilt from
    the `name`-N.index files present.  Returns the one-line note for the
    user, or None when nothing was changed.
    """
    if not os.path.isdir(directory):
        return None
    path = os.path.join(directory, STATE_FILE)
    why = None
    if os.path.exists(path):
        try:
            with open(path, "rb") as handle:
                state = text_format.Parse(handle.read().decode("utf-8"), CheckpointState())
            if not state.model_checkpoint_path:
                raise ValueError("it names no checkpoint")
            return None
        except (text_format.ParseError, ValueError) as error:   # UnicodeDecodeError too
            why = _first_line(error)
    present = _present(directory, name)
    if why is None and not present:
        return None
    aside = set_aside(path) if why is not None else None
    if present:
        times = [os.path.getmtime(os.path.join(directory, p + ".index")) for p in present]
        _write_state(directory, present, times, min(times) - 1.0)
        rebuilt = (f"rebuilt from the checkpoint(s) present ({', '.join(present)}; "
                   f"the newest readable one is resumed)")
    else:
        rebuilt = "no checkpoint is present, so none is resumed"
    if aside is None:
        return f"{path} was missing while checkpoints are present: {rebuilt}."
    return f"{path} could not be read ({why}): set aside as {aside}, {rebuilt}."


def restore_newest_readable(checkpoint, directory, name="ckpt"):
    """Restores the newest readable checkpoint of `directory` into `checkpoint`.

    Checkpoints newer than it that failed to restore have their files set
    aside (``.damaged`` suffix) and are dropped from the list file, so the
    CheckpointManager created afterwards continues from the restored one.

    Returns:
      (restored checkpoint prefix or None when there is none, [one-line notes]).
    Raises:
      CheckpointMismatchError: the newest readable checkpoint is of another model.
      RunFileDamaged: checkpoints are listed but none can be read (nothing
        was set aside).
    """
    notes = [n for n in [repair_checkpoint_list(directory, name)] if n]
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        return None, notes
    with open(path, "rb") as handle:
        state = text_format.Parse(handle.read().decode("utf-8"), CheckpointState())
    paths = list(state.all_model_checkpoint_paths)
    times = list(state.all_model_checkpoint_timestamps)
    if len(times) != len(paths):
        times = [state.last_preserved_timestamp] * len(paths)
    if state.model_checkpoint_path in paths:   # the latest is last
        keep = paths.index(state.model_checkpoint_path) + 1
        paths, times = paths[:keep], times[:keep]
    else:
        paths.append(state.model_checkpoint_path)
        times.append(state.last_preserved_timestamp)
    failures = []
    for index in range(len(paths) - 1, -1, -1):
        prefix = os.path.join(directory, paths[index])   # an absolute path stays as is
        try:
            restore_exactly(checkpoint, prefix)
        except (CheckpointMismatchError, *_NOT_DAMAGE):
            raise
        except (tf.errors.OpError, ValueError, IndexError, DecodeError) as error:
            # the checkpoint reader's OpError ("file is too short to be an
            # sstable", "not an sstable", checksums, a missing .data file) and
            # IndexError ("Read less bytes than requested": truncated or zeroed data)
            failures.append((prefix, _first_line(error)))
            continue
        for failed, why in failures:
            files = sorted(f for f in os.listdir(os.path.dirname(failed))
                           if f == os.path.basename(failed) + ".index"
                           or re.fullmatch(re.escape(os.path.basename(failed))
                                           + r"\.data-\d+-of-\d+", f))
            aside = [os.path.basename(set_aside(os.path.join(os.path.dirname(failed), f)))
                     for f in files]
            notes.append(f"checkpoint {failed} cannot be read ({why}): its files are set aside ("
                         + (", ".join(aside) if aside else "none were present")
                         + f"); resuming from the previous one, {prefix}.")
        if failures:
            _write_state(directory, paths[:index + 1], times[:index + 1],
                         state.last_preserved_timestamp)
        return prefix, notes
    raise RunFileDamaged(
        f"none of the {len(paths)} checkpoint(s) in {directory} can be read ("
        + "; ".join(f"{os.path.basename(p)}: {why}" for p, why in failures)
        + "); nothing was set aside. Move the checkpoints away to start the run over.")


def save_checkpoint(manager, number, last=None):
    """``manager.save(checkpoint_number=number)``; returns the saved prefix.

    Args:
      manager: a tf.train.CheckpointManager.
      number: the checkpoint's number (the run's step, or epoch for best/).
      last: the run's last complete checkpoint, named if the save fails
        (default: `manager`'s latest).
    Raises:
      RunWriteFailed: the save failed (OSError or OpError, e.g. a full
        disk); the saver's scratch folder (``<prefix>_temp``) is removed,
        the checkpoints listed before are untouched.
    """
    last = last or manager.latest_checkpoint
    try:
        return manager.save(checkpoint_number=number)
    except (OSError, tf.errors.OpError) as error:
        prefix = f"{manager._checkpoint_prefix}-{number}"   # pylint: disable=protected-access
        shutil.rmtree(prefix + "_temp", ignore_errors=True)
        raise write_failed(f"checkpoint {prefix}", error, checkpoint=last,
                           unchanged=False) from None
