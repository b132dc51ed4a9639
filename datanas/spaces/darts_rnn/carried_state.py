"""Hidden state carried from one truncated-BPTT window to the next.

A language model reads its corpus as contiguous rows, one window of ~35
tokens per step; the last hidden state of a window is the first of the next
(AWD-LSTM/DARTS ``repackage_hidden``: carried, not back-propagated).  The
state lives in a non-trainable variable, so it is checkpointed with the
model and a run resumed mid-epoch continues with exactly the same state.

One slot per input stream (training, architecture and evaluation batches
each carry their own state; ids in ``data_tf.lm_inputs``), each holding the
GLOBAL batch's rows.  Under a strategy replica ``r`` owns rows
``[r * b, (r + 1) * b)`` (the input pipeline hands them out in that order);
after a window the replicas' new states are all-gathered so every replica
writes the same whole value: the variable stays identical on all devices and
a mirrored run equals the single-device run.
"""

import keras
import tensorflow as tf

__all__ = ["CarriedState", "NUM_STREAMS", "replica_rows"]

NUM_STREAMS = 3


def replica_rows(rows):
    """(first global row of this replica, number of replicas in sync)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tf.constant(0, tf.int32), 1
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return replica * rows, context.num_replicas_in_sync


@keras.saving.register_keras_serializable(package="datanas")
class CarriedState(keras.layers.Layer):
    """Per-stream hidden state of `max_rows` rows of `units` values.

    Args:
      units: hidden size.
      max_rows: the largest global batch (rows) of any stream.
    """

    def __init__(self, units, max_rows, **kwargs):
        super().__init__(**kwargs)
        self.units, self.max_rows = int(units), int(max_rows)
        self.values = self.add_weight(
            shape=(NUM_STREAMS, self.max_rows, self.units), initializer="zeros",
            trainable=False, name="values",
            aggregation="only_first_replica")
        self.built = True

    def read(self, stream, reset, rows):
        """This replica's [rows, units] state of `stream` (zeros where `reset`)."""
        offset, replicas = replica_rows(rows)
        tf.debugging.assert_less_equal(
            rows * replicas, self.max_rows,
            message=f"a global batch has more rows than the carried state's max_rows="
                    f"{self.max_rows}; build the model with a larger state_rows")
        state = tf.slice(tf.convert_to_tensor(self.values),
                         tf.stack([tf.cast(stream, tf.int32), offset, 0]),
                         tf.stack([1, rows, self.units]))[0]
        return tf.where(tf.cast(reset, tf.bool), tf.zeros_like(state), state)

    def write(self, stream, state):
        """Stores every replica's last state ([rows, units] here) for `stream`."""
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            state = context.all_gather(state, axis=0)
        state = tf.stop_gradient(tf.cast(state, self.values.dtype))
        rows = tf.shape(state)[0]
        indices = tf.stack([tf.fill([rows], tf.cast(stream, tf.int32)),
                            tf.range(rows, dtype=tf.int32)], axis=1)
        self.values.assign(tf.tensor_scatter_nd_update(tf.convert_to_tensor(self.values),
                                                       indices, state))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "max_rows": self.max_rows}
