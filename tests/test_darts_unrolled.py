"""Second-order DARTS: the finite-difference architecture gradient against
exact automatic differentiation of the one-step-unrolled objective."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from datanas.searching.config import SearchConfig
from datanas.searching.searcher import Searcher
from datanas.searching.unrolled import _loss_at, unrolled_arch_gradients
from datanas.spaces.darts_cnn.supernet import SearchNetwork

PRIMITIVES = ("none", "avg_pool_3x3", "skip_connect", "sep_conv_3x3")


def _setup(global_seed, learning_rate, momentum, hessian_radius=0.01):
    global_seed(3)
    # float64 keeps the finite-difference error far below the second-order term.
    # The dtype policy, not only floatx: Keras caches the global policy the first
    # time a layer is built, so after other tests floatx alone would not apply.
    previous_floatx, previous_policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        model = SearchNetwork(4, init_channels=4, num_cells=3, num_nodes=2, primitives=PRIMITIVES,
                              weighting="softmax", mode="dense", arch_init_scale=0.5, seed=3)
        model.build((None, 6, 6, 1))
    finally:
        keras.config.set_floatx(previous_floatx)
        keras.config.set_dtype_policy(previous_policy)
    config = SearchConfig(epochs=1, learning_rate=learning_rate, learning_rate_min=0.0,
                          momentum=momentum, search_mode="alternate", unrolled=True,
                          derivation="darts", hessian_radius=hessian_radius)
    return model, Searcher(model, config, steps_per_epoch=10)


def _unrolled_objective(searcher, arch_batch, train_batch):
    """L_val(w'(alpha), alpha) at the current logits, w' = one unrolled SGD step."""
    model, config = searcher.model, searcher.config
    net_vars = model.network_variables
    xi = tf.cast(searcher.weight_optimizer.learning_rate, tf.float64)
    with tf.GradientTape() as tape:
        train_loss, _ = searcher.replica_loss(train_batch[1], searcher.forward(train_batch[0], 1))
    grads = tape.gradient(train_loss, net_vars)
    velocities = searcher.weight_optimizer.momentums or [tf.zeros_like(v) for v in net_vars]
    unrolled = [tf.convert_to_tensor(v) - xi * (g + config.weight_decay * tf.convert_to_tensor(v))
                + config.momentum * tf.convert_to_tensor(m)
                for v, g, m in zip(net_vars, grads, velocities)]
    assert len(unrolled) == len(net_vars)
    return float(_loss_at(searcher, unrolled, arch_batch, 1)[0])


def _directional_derivative(searcher, direction, arch_batch, train_batch, step=1e-6):
    """Central difference of the unrolled objective along `direction` (reference).

    Only first derivatives are taken by autodiff here; TF's batch-norm
    variance stops the gradient through the mean, which leaves first
    derivatives exact but makes nested-tape second derivatives inexact.
    """
    arch_vars = searcher.model.architecture_variables
    original = [v.numpy().copy() for v in arch_vars]
    values = []
    for sign in (1.0, -1.0):
        for variable, value, d in zip(arch_vars, original, direction):
            variable.assign(value + sign * step * d)
        values.append(_unrolled_objective(searcher, arch_batch, train_batch))
    for variable, value in zip(arch_vars, original):
        variable.assign(value)
    return (values[0] - values[1]) / (2 * step)


def _first_order_gradient(searcher, arch_batch):
    with tf.GradientTape() as tape:
        loss, _ = searcher.replica_loss(arch_batch[1], searcher.forward(arch_batch[0], 1))
    return tape.gradient(loss, searcher.model.architecture_variables)


def _flat(tensors):
    return np.concatenate([np.asarray(t, np.float64).ravel() for t in tensors])


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_finite_difference_hessian_matches_exact_second_order_gradient(momentum, global_seed):
    # ReLU kinks make the finite difference at DARTS' radius (0.01 of the
    # gradient norm) a coarse approximation on a network this small, so the
    # implementation is checked in the limit of a small radius (float64)
    # against central differences of the unrolled objective itself.
    model, searcher = _setup(global_seed, learning_rate=0.5, momentum=momentum,
                             hessian_radius=1e-7)
    if momentum:
        # Give the momentum buffers non-zero content first (two weight steps).
        batch = (tf.random.stateless_normal([8, 6, 6, 1], seed=[5, 0], dtype=tf.float64),
                 tf.constant([0, 1, 2, 3, 0, 1, 2, 3]))
        searcher.weight_step(batch)
        searcher.weight_step(batch)
        assert np.abs(_flat(searcher.weight_optimizer.momentums)).max() > 0
    train = (tf.random.stateless_normal([8, 6, 6, 1], seed=[1, 0], dtype=tf.float64),
             tf.constant([0, 1, 2, 3, 3, 2, 1, 0]))
    held_out = (tf.random.stateless_normal([8, 6, 6, 1], seed=[2, 0], dtype=tf.float64),
                tf.constant([1, 1, 0, 0, 2, 2, 3, 3]))
    approx, _, _ = tf.function(
        lambda arch, train: unrolled_arch_gradients(searcher, arch, train, 1))(held_out, train)
    first_order = _first_order_gradient(searcher, held_out)
    rng = np.random.default_rng(0)
    reference, along_approx, along_first = [], [], []
    for _ in range(3):
        direction = _flat([rng.standard_normal(v.shape) for v in model.architecture_variables])
        pieces = np.split(direction, np.cumsum([int(np.prod(v.shape))
                                                for v in model.architecture_variables])[:-1])
        shaped = [p.reshape(v.shape) for p, v in zip(pieces, model.architecture_variables)]
        reference.append(_directional_derivative(searcher, shaped, held_out, train))
        along_approx.append(float(_flat(approx) @ direction))
        along_first.append(float(_flat(first_order) @ direction))
    reference, along_approx, along_first = map(np.array, (reference, along_approx, along_first))
    second_order_term = np.abs(reference - along_first).max()
    # The unrolled objective's slopes differ from the first-order gradient's ...
    assert second_order_term > 0.05 * np.abs(reference).max()
    # ... and the finite-difference Hessian recovers the difference.
    np.testing.assert_allclose(along_approx, reference, rtol=0, atol=0.01 * second_order_term)


def test_unrolled_step_updates_only_the_architecture_and_leaves_weights_untouched(global_seed):
    model, searcher = _setup(global_seed, learning_rate=0.1, momentum=0.9)
    batch = (tf.random.stateless_normal([8, 6, 6, 1], seed=[7, 0], dtype=tf.float64),
             tf.constant([0, 1, 2, 3, 0, 1, 2, 3]))
    weights0 = [v.numpy().copy() for v in model.weights if v.path not in
                {a.path for a in model.architecture_variables}]
    arch0 = _flat([v.numpy() for v in model.architecture_variables])
    searcher.unrolled_arch_step(batch, batch)
    # Network weights and batch-norm statistics are not overwritten by the unrolled passes.
    weights1 = [v.numpy() for v in model.weights if v.path not in
                {a.path for a in model.architecture_variables}]
    for before, after in zip(weights0, weights1):
        np.testing.assert_array_equal(before, after)
    assert np.abs(_flat([v.numpy() for v in model.architecture_variables]) - arch0).max() > 0


def test_unrolled_needs_the_alternate_mode():
    with pytest.raises(ValueError, match="alternate"):
        SearchConfig(unrolled=True, search_mode="joint")
