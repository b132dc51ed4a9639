"""Restoring a checkpoint only into the state it was written from.

``tf.train.Checkpoint.restore`` matches variables by their path in the
object graph; a checkpoint of another architecture either fails deep inside
TensorFlow (a shape error naming one tensor) or, worse, restores part of
the state and leaves the rest at its initial values.  ``restore_exactly``
compares every variable path and shape first and refuses any difference
with one message, before anything is assigned.

The paths are stable because every sub-layer of our networks is an
attribute (see ``datanas.engine.tracking.LayerList``), never an auto-numbered
layer name.
"""

import keras
import tensorflow as tf

__all__ = ["CheckpointMismatchError", "expected_checkpoint_shapes", "restore_exactly"]

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
