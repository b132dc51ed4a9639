"""Pieces of a distributed train/eval step shared by search and training.

Every update follows one recipe, so that a step under any strategy equals
the single-device step on the global batch:

1. the per-replica loss is the sum of per-example losses divided by the
   GLOBAL batch size (``scaled_loss``);
2. per-replica gradients are summed across replicas (``all_reduce_sum``) --
   before anything that is not linear, i.e. clipping;
3. the global gradient is clipped by its global norm, L2 weight decay
   ``decay * w`` is added, and the optimizer applies it (``apply_update``).
   Keras optimizers sum gradients across replicas once more inside
   ``apply_gradients``; the already-global gradient is divided by the
   replica count so that sum gives it back exactly.

Batch-norm moving statistics are averaged over replicas after every update
(``sync_replica_statistics``): Keras 3 creates them with aggregation "none",
so under MirroredStrategy each replica's copy would otherwise follow only its
own share of the batch, evaluation would mix the copies and the checkpoint
would keep the first replica's alone.

Evaluation steps return per-replica sums; the last batch of a split can
leave a replica with zero examples, which ``guarded_sums`` turns into zeros
instead of a NaN.
"""

import tensorflow as tf

from datanas.core.replicas import replica_component

__all__ = ["scaled_loss", "all_reduce_sum", "apply_update", "guarded_sums",
           "reduce_sums", "batch_norm_statistics", "sync_replica_statistics",
           "replica_component"]

_STATISTICS = ("moving_mean", "moving_variance")


def scaled_loss(per_example_losses, global_batch_size=None):
    """Per-replica loss scaled by the global batch (None: this batch x replicas)."""
    if global_batch_size is None:
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        global_batch_size = tf.shape(per_example_losses)[0] * replicas
    return tf.nn.compute_average_loss(per_example_losses, global_batch_size=global_batch_size)


def all_reduce_sum(grads, variables):
    """Sums per-replica gradients over replicas; missing gradients become zeros."""
    grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    return grads


def apply_update(optimizer, grads, variables, *, clip_norm=0.0, weight_decay=0.0,
                 summed=False, step_scale=None):
    """Clip (global norm, 0 = off), add L2 decay, apply; inside a replica context.

    Args:
      summed: the gradients are already all-reduced (e.g. an unrolled step).
      step_scale: optional scalar multiplying the (clipped + decayed)
        gradient: for plain SGD, a per-step learning-rate factor (the
        sequence-length scaling of variable-length BPTT).
    """
    if not summed:
        grads = all_reduce_sum(grads, variables)
    if clip_norm:
        grads, _ = tf.clip_by_global_norm(grads, clip_norm)
    if weight_decay:
        grads = [g + weight_decay * v for g, v in zip(grads, variables)]
    if step_scale is not None:
        grads = [g * tf.cast(step_scale, g.dtype) for g in grads]
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas > 1:
        grads = [g / replicas for g in grads]
    optimizer.apply_gradients(zip(grads, variables))


def batch_norm_statistics(model):
    """The moving mean and variance of every batch-norm layer of `model`."""
    return [v for v in model.non_trainable_variables if v.name in _STATISTICS]


def sync_replica_statistics(variables):
    """Sets every replica's copy of `variables` to their mean over replicas;
    inside a replica context, after the step that updated them (a no-op with
    one replica).  Without it, the per-replica copies of Keras 3's batch-norm
    statistics drift apart under MirroredStrategy (measured: after one step
    on halves with means 0 and 10 the copies held 0 and 5)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1 or not variables:
        return
    # Each replica's own copy, read on its device: a multi-worker collective
    # needs placed inputs ("destinations can not be empty" otherwise).
    local = [replica_component(v) for v in variables]
    means = context.all_reduce(tf.distribute.ReduceOp.MEAN, [v.read_value() for v in local])
    for variable, mean in zip(local, means):
        variable.assign(mean)


def guarded_sums(count, compute, zeros, guard=True):
    """`compute()` (a tuple of sums) unless this replica's batch is empty
    (`guard=False`: batches are never empty; no tf.cond)."""
    if not guard:
        return compute()
    return tf.cond(count > 0, compute, lambda: zeros)


def reduce_sums(strategy, per_replica):
    """Sums each per-replica value over replicas (cross-replica context)."""
    return tuple(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                 for value in per_replica)
