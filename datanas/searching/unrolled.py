"""Second-order DARTS architecture gradient (Liu et al. 2019, Eq. 7-8).

The gradient of the held-out loss is taken at the one-step-unrolled weights
w' = w - xi * (momentum + grad + decay); the Hessian-vector product is a
central finite difference.  The unrolled weights are plain tensors fed
through ``keras.StatelessScope``, so no variable (weights or batch-norm
statistics) is overwritten and the step runs unchanged under a
distribution strategy.
"""

import keras
import tensorflow as tf

__all__ = ["unrolled_arch_gradients"]


def _loss_at(searcher, weight_values, batch, stream):
    """Replica loss and sums with the network weights replaced by `weight_values`."""
    inputs, targets = searcher.task.unpack(batch)
    mapping = list(zip(searcher.model.network_variables, weight_values))
    with keras.StatelessScope(state_mapping=mapping):
        # Batch-norm statistic updates stay inside the scope (discarded).
        return searcher.replica_loss(targets, searcher.forward(inputs, stream))


def unrolled_arch_gradients(searcher, arch_batch, train_batch, stream):
    """Returns (replica-summed architecture gradients, the held-out sums, count).

    Runs in a replica context (or outside any strategy).  One child (the
    step's `stream` sample) is used by every pass.
    """
    config = searcher.config
    net_vars = searcher.model.network_variables
    arch_vars = searcher.model.architecture_variables
    current = [tf.convert_to_tensor(v) for v in net_vars]
    with tf.GradientTape() as tape:
        tape.watch(current)
        train_loss, _ = _loss_at(searcher, current, train_batch, stream)
    grads = searcher.summed_gradients(tape.gradient(train_loss, current), net_vars)
    xi = searcher.weight_optimizer.learning_rate
    # Keras SGD keeps m = momentum * m - lr * grad and adds m to the weight.
    velocities = (searcher.weight_optimizer.momentums if config.momentum
                  else [None] * len(net_vars))
    unrolled = []
    for value, grad, velocity in zip(current, grads, velocities):
        step = -tf.cast(xi, value.dtype) * (grad + config.weight_decay * value)
        if velocity is not None:
            step += config.momentum * tf.convert_to_tensor(velocity)
        unrolled.append(value + step)
    with tf.GradientTape() as tape:
        tape.watch(unrolled)
        loss, sums = _loss_at(searcher, unrolled, arch_batch, stream)
    grads = tape.gradient(loss, unrolled + arch_vars)
    weight_grads = searcher.summed_gradients(grads[:len(net_vars)], net_vars)
    arch_grads = searcher.summed_gradients(grads[len(net_vars):], arch_vars)
    radius = config.hessian_radius / (
        tf.cast(tf.linalg.global_norm(weight_grads), tf.float64) + 1e-12)

    def train_arch_grads(sign):
        values = [v + tf.cast(sign * radius, d.dtype) * d for v, d in zip(current, weight_grads)]
        with tf.GradientTape() as inner:
            shifted_loss, _ = _loss_at(searcher, values, train_batch, stream)
        return searcher.summed_gradients(inner.gradient(shifted_loss, arch_vars), arch_vars)

    plus, minus = train_arch_grads(1.0), train_arch_grads(-1.0)
    arch_grads = [g - tf.cast(tf.cast(xi, tf.float64) / (2.0 * radius), g.dtype) * (p - m)
                  for g, p, m in zip(arch_grads, plus, minus)]
    return arch_grads, sums, searcher.task.count(searcher.task.unpack(arch_batch)[1])
