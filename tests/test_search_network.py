"""SearchNetwork: variable sets, sampled codes, gradient flow, errors."""

import numpy as np
import pytest
import tensorflow as tf

from datanas.spaces.darts_cnn.genotype import CONV_PRIMITIVES
from datanas.spaces.darts_cnn.supernet import SearchNetwork, reduction_cell_indices

K = len(CONV_PRIMITIVES)


def tiny_network(**overrides):
    kwargs = dict(num_classes=10, init_channels=4, num_cells=3, num_nodes=2, num_samples=2,
                  seed=3)
    kwargs.update(overrides)
    model = SearchNetwork(**kwargs)
    model.build((None, 8, 8, 1))
    return model


@pytest.fixture(scope="module")
def model():
    return tiny_network()


def test_variable_sets_are_disjoint_and_complete(model):
    arch = model.architecture_variables
    net = model.network_variables
    assert len(arch) == 2 * model.num_nodes
    assert [tuple(v.shape) for v in arch] == [(2, K), (3, K)] * 2
    ids_arch, ids_net = {id(v) for v in arch}, {id(v) for v in net}
    assert not ids_arch & ids_net
    assert ids_arch | ids_net == {id(v) for v in model.trainable_variables}


def test_reduction_positions():
    assert reduction_cell_indices(8) == [2, 5]
    assert reduction_cell_indices(20) == [6, 13]
    model = tiny_network()
    assert [c.reduction for c in model.cells] == [False, True, True]


@pytest.mark.parametrize("scope", ["node", "edge"])
def test_sampled_codes_respect_scope(scope):
    model = tiny_network(egs_scope=scope, num_samples=3, edge_combine="sum")
    for step in range(20):
        weights = model.edge_weights(stochastic=True, seed=tf.constant([1, step], tf.int64))
        for kind in ("normal", "reduce"):
            for node, w in enumerate(weights[kind]):
                w = w.numpy()
                assert w.shape == (node + 2, K)
                assert set(np.unique(w)) <= {0.0, 1.0}
                if scope == "node":
                    assert 1 <= w.sum() <= 3
                else:
                    assert np.all((w.sum(axis=1) >= 1) & (w.sum(axis=1) <= 3))


def test_seeded_codes_are_reproducible(model):
    seed = tf.constant([5, 9], tf.int64)
    a = model.edge_weights(stochastic=True, seed=seed)
    b = model.edge_weights(stochastic=True, seed=seed)
    for kind in a:
        for x, y in zip(a[kind], b[kind]):
            np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_gradients_reach_both_variable_sets():
    # Four ops (one parameter-free of each kind) keep the traced gradient small.
    model = tiny_network(primitives=("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"))
    images = tf.random.stateless_normal([4, 8, 8, 1], seed=[0, 1])
    labels = tf.constant([0, 1, 2, 3])

    @tf.function
    def grads(seed):
        with tf.GradientTape() as tape:
            weights = model.edge_weights(stochastic=True, seed=seed)
            logits = model.forward(images, weights, training=True)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True))
        return tape.gradient(loss, model.architecture_variables + model.network_variables)

    g = grads(tf.constant([0, 0], tf.int64))
    arch_grads = g[:len(model.architecture_variables)]
    for grad in arch_grads:
        assert grad is not None
        assert np.all(np.isfinite(grad.numpy()))
    # Every node's logits receive gradient, including options not drawn.
    assert all(np.count_nonzero(grad.numpy()) > 1 for grad in arch_grads)
    net_grads = [x for x in g[len(arch_grads):] if x is not None]
    assert any(np.abs(x.numpy()).sum() > 0 for x in net_grads)
    assert all(np.all(np.isfinite(x.numpy())) for x in net_grads)


def test_softmax_weighting_is_dense():
    model = tiny_network(weighting="softmax", mode="dense")
    weights = model.edge_weights(stochastic=True)
    for w in weights["normal"]:   # one softmax per edge (DARTS)
        np.testing.assert_allclose(w.numpy().sum(axis=-1), 1.0, rtol=1e-5)
    logits = model(tf.zeros([2, 8, 8, 1]), training=False)
    assert logits.shape == (2, 10)


def test_inference_call_is_deterministic(model):
    x = tf.random.stateless_normal([2, 8, 8, 1], seed=[3, 3])
    np.testing.assert_array_equal(model(x, training=False).numpy(), model(x, training=False).numpy())


@pytest.mark.parametrize("kwargs, message", [
    (dict(egs_scope="cell"), "egs_scope"),
    (dict(weighting="argmax"), "weighting"),
    (dict(weighting="softmax", mode="sparse"), "mode='dense'"),
    (dict(init_channels=5), "even"),
    (dict(num_cells=0), "num_cells"),
    (dict(primitives=("none", "conv_7x7")), "conv_7x7"),
    (dict(primitives=("skip_connect", "skip_connect")), "distinct"),
    (dict(primitives=("none",)), "other than 'none'"),
    (dict(skip="while_loop"), "skip must be one of examples, cond"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchNetwork(10, **kwargs)


def test_both_skip_mechanisms_give_the_same_search(global_seed):
    """The default graph (ops skipped by running them on no example) and the
    tf.cond graph give the same losses and architecture for the same seed,
    over joint steps that sample different children (every kind of op: the
    pools, both skip_connect forms, a separable and a dilated conv)."""
    from datanas.searching.config import SearchConfig  # pylint: disable=import-outside-toplevel
    from datanas.searching.searcher import Searcher  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(5)
    batches = [(tf.constant(rng.normal(size=(8, 8, 8, 1)).astype("float32")),
                tf.constant(rng.integers(0, 10, size=8).astype("int32"))) for _ in range(3)]
    results = {}
    for skip in ("examples", "cond"):
        global_seed(0)
        model = tiny_network(skip=skip, egs_scope="edge", num_nodes=1, primitives=(
            "none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3"))
        searcher = Searcher(model, SearchConfig(epochs=1, seed=2, execution="graph"),
                            steps_per_epoch=3)
        losses = [float(searcher.joint_step(batch)["loss"]) for batch in batches]
        results[skip] = (losses, [v.numpy() for v in model.weights])
    (loss_a, weights_a), (loss_b, weights_b) = results["examples"], results["cond"]
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
    assert len(set(np.round(loss_a, 4))) == len(loss_a)  # the steps did differ
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_supernet_is_a_body_under_the_tasks_head():
    """The space builds stem and cells; the head is the task's layer, kept
    in the config (a model rebuilt from it has the same head) and among the
    network variables, never the architecture ones."""
    import keras  # pylint: disable=import-outside-toplevel

    from datanas.core.heads import ClassificationHead  # pylint: disable=import-outside-toplevel
    from datanas.tasks import ClassificationTask, default_task  # pylint: disable=import-outside-toplevel

    task = ClassificationTask(7)
    net = SearchNetwork(head=task.build_head(), init_channels=4, num_cells=3, num_nodes=2,
                        num_samples=2, seed=0)
    net.build((None, 8, 8, 1))
    assert isinstance(net.head, ClassificationHead) and net.num_classes == 7
    assert net(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 7)
    head_ids = {id(v) for v in net.head.trainable_variables}
    assert head_ids <= {id(v) for v in net.network_variables}
    assert not head_ids & {id(v) for v in net.architecture_variables}
    rebuilt = SearchNetwork.from_config(net.get_config())
    rebuilt.build((None, 8, 8, 1))
    assert isinstance(rebuilt.head, ClassificationHead) and rebuilt.head.num_classes == 7
    assert default_task(net).num_classes == 7

    class Regression(keras.layers.Layer):   # any head a task may bring
        def call(self, features):
            return keras.ops.mean(features, axis=(1, 2))[:, :1]

    other = SearchNetwork(head=Regression(), init_channels=4, num_cells=3, num_nodes=2,
                          num_samples=2, seed=0)
    other.build((None, 8, 8, 1))
    assert other(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 1)
    with pytest.raises(ValueError, match="pass task="):
        default_task(other)
    with pytest.raises(ValueError, match="not both"):
        SearchNetwork(10, head=task.build_head())
