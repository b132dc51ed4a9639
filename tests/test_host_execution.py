"""Host-driven search steps: shared layer functions, equality with the
compiled graph, and only the sampled child executed."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from datanas.core.layer_functions import LayerFunctions, call_layer
from datanas.searching.config import SearchConfig
from datanas.searching.searcher import HOST_AUTO_MAX_STEPS, Searcher, resolve_execution
from datanas.spaces.darts_cnn import mixed_edge
from datanas.spaces.darts_cnn.ops import build_conv_op
from datanas.spaces.darts_cnn.genotype import CONV_PRIMITIVES
from datanas.spaces.darts_cnn.supernet import SearchNetwork

# One op of each kind the host path treats differently (none: never called;
# a pool; an identity; a convolution); every op class is checked against its
# own call in test_shared_function_equals_the_layer_call.  Fewer ops keep the
# compiled side of the host-vs-graph comparison quick to build.
PRIMITIVES = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")


def _network(**overrides):
    kwargs = dict(init_channels=4, num_cells=3, num_nodes=2, num_samples=3, seed=0,
                  primitives=PRIMITIVES)
    kwargs.update(overrides)
    model = SearchNetwork(10, **kwargs)
    model.build((None, 8, 8, 1))
    return model


def _batches(count, seed=5):
    rng = np.random.default_rng(seed)
    return [(tf.constant(rng.normal(size=(8, 8, 8, 1)).astype("float32")),
             tf.constant(rng.integers(0, 10, size=8).astype("int32"))) for _ in range(count)]


@pytest.mark.parametrize("name, stride", [("sep_conv_3x3", 1), ("dil_conv_3x3", 2),
                                          ("max_pool_3x3", 1), ("skip_connect", 2)])
def test_shared_function_equals_the_layer_call(name, stride):
    """Outputs, gradients and batch-norm statistics of an op called through
    a function traced from ANOTHER op of the same configuration, on a batch
    of another size, equal the op's own Keras call."""
    x = tf.random.stateless_normal([4, 8, 8, 6], seed=[1, 2])
    template, op, ref_op = (build_conv_op(name, 6, stride, False, True) for _ in range(3))
    for layer in (template, op, ref_op):
        layer.build(x.shape)
    for variable in op.trainable_variables:   # different weights from the template
        variable.assign(tf.random.stateless_normal(variable.shape, seed=[3, 4]))
    ref_op.set_weights(op.get_weights())
    stats0 = [v.numpy().copy() for v in op.non_trainable_variables]

    functions = LayerFunctions()
    functions(template, x[:3], training=True)        # traces from the template
    probe = None
    with tf.GradientTape() as tape:
        shared = functions(op, x, training=True, scale=2.0)
        # A fixed random projection: a well-conditioned loss (a sum of squares
        # of batch-normalised outputs barely depends on the kernels).
        probe = tf.random.stateless_normal(shared.shape, seed=[5, 6])
        loss = tf.reduce_sum(shared * probe)
    shared_grads = tape.gradient(loss, op.trainable_variables)
    with tf.GradientTape() as tape:
        direct = 2.0 * ref_op(x, training=True)
        loss = tf.reduce_sum(direct * probe)
    direct_grads = tape.gradient(loss, ref_op.trainable_variables)

    assert len(functions) == 1, "one function for two ops of the same configuration"
    np.testing.assert_allclose(shared.numpy(), direct.numpy(), rtol=1e-5, atol=1e-6)
    assert len(shared_grads) == len(direct_grads)
    for a, b in zip(shared_grads, direct_grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    assert op.non_trainable_variables, "every op here batch-normalises"
    for a, b, before in zip(op.non_trainable_variables, ref_op.non_trainable_variables, stats0):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
        assert not np.allclose(a.numpy(), before)   # the moving statistics were updated


def test_call_layer_outside_an_active_scope_is_a_plain_call():
    op = build_conv_op("sep_conv_3x3", 4, 1, False, True)
    x = tf.ones([2, 6, 6, 4])
    op.build(x.shape)
    functions = LayerFunctions()
    np.testing.assert_allclose(call_layer(op, x, False).numpy(), op(x, training=False).numpy())
    with functions.active():
        call_layer(op, x, False)
        tf.function(lambda: call_layer(op, x, False))()   # traced: a plain call in the graph
    assert len(functions) == 1


def test_auto_execution_is_host_for_short_conv_searches_only():
    model = _network()
    strategy = tf.distribute.get_strategy()
    assert resolve_execution("auto", model, strategy) == "host"
    assert resolve_execution("auto", model, strategy, HOST_AUTO_MAX_STEPS) == "host"
    assert resolve_execution("auto", model, strategy, HOST_AUTO_MAX_STEPS + 1) == "graph"
    assert resolve_execution("host", model, strategy, HOST_AUTO_MAX_STEPS + 1) == "host"
    assert resolve_execution("graph", model, strategy) == "graph"
    # Dense mixing (DARTS) computes every op: compiled.
    assert resolve_execution("auto", _network(weighting="softmax", mode="dense"),
                             strategy) == "graph"

    class CompiledOnly(keras.Model):
        pass
    assert resolve_execution("auto", CompiledOnly(), strategy) == "graph"
    with pytest.raises(ValueError, match="execution='host' is not supported by CompiledOnly"):
        resolve_execution("host", CompiledOnly(), strategy)
    with pytest.raises(ValueError, match="execution must be one of auto, host, graph"):
        SearchConfig(execution="eager")
    # Strategies beyond local devices (TPU, multi-worker) run compiled steps.
    class RemoteStrategy:
        pass
    assert resolve_execution("auto", model, RemoteStrategy()) == "graph"
    with pytest.raises(ValueError, match="not RemoteStrategy"):
        resolve_execution("host", model, RemoteStrategy())
    assert resolve_execution("auto", model, tf.distribute.OneDeviceStrategy("/cpu:0")) == "host"


@pytest.mark.parametrize("mode", ["joint", "alternate"])
def test_host_and_graph_steps_give_the_same_search(mode, global_seed):
    """Same seed, same batches: the host-driven steps and the compiled graph
    give the same losses, the same sampled children and the same weights and
    architecture logits (to float rounding) over steps that sample different
    children."""
    batches = _batches(4)
    results = {}
    for execution in ("host", "graph"):
        global_seed(0)
        model = _network(egs_scope="edge")
        searcher = Searcher(model, SearchConfig(epochs=1, seed=2, search_mode=mode,
                                                execution=execution), steps_per_epoch=4)
        assert searcher.execution == execution
        losses, codes = [], []
        for batch in batches:
            codes.append([c.numpy() for c in tf.nest.flatten(
                model.edge_weights(stochastic=True, seed=searcher.step_seed(0)))])
            if mode == "joint":
                metrics = searcher.joint_step(batch)
            else:
                metrics = searcher.search_step(batch, batches[0])
            losses.append(float(metrics["loss"]))
        results[execution] = (losses, codes, [v.numpy() for v in model.weights])
    (loss_h, codes_h, weights_h), (loss_g, codes_g, weights_g) = results["host"], results["graph"]
    np.testing.assert_allclose(loss_h, loss_g, rtol=1e-5)
    assert len(set(np.round(loss_h, 4))) == len(loss_h)   # the steps did differ
    for a, b in zip(tf.nest.flatten(codes_h), tf.nest.flatten(codes_g)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights_h, weights_g):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gradient", ["sampled", "full"])
def test_host_step_runs_the_sampled_ops_and_undrawn_ones_only_forward(monkeypatch, gradient):
    """With egs_gradient="sampled" every op called in a host-driven step has
    a non-zero bit in that step's code, and every selected op is called
    exactly once -- also after the search run has given the steps its
    dataset's batch signature, and for a last, shorter batch (which reuses
    the functions already traced).  With "full" (the authors' gradient)
    every op is called once: the undrawn ones forward only."""
    # All 8 DARTS ops (host steps build nothing, so this stays quick): M=3
    # draws switch on at most 3 of an edge's 7 computable ops.
    model = _network(egs_scope="edge", primitives=CONV_PRIMITIVES, egs_gradient=gradient)
    searcher = Searcher(model, SearchConfig(epochs=1, seed=3), steps_per_epoch=2)
    batches = _batches(2)
    batches[1] = tuple(t[:5] for t in batches[1])
    searcher.use_batch_signature(tuple(tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype)
                                       for t in batches[0]))
    edges = {}
    for cell in model.cells:
        kind = "reduce" if cell.reduction else "normal"
        for node, node_edges in enumerate(cell.edges):
            for position, edge in enumerate(node_edges):
                for k, op in enumerate(edge.candidate_ops):
                    if op is not None:
                        edges[id(op)] = (kind, node, position, k)
    called = []

    def recording(layer, inputs, training=None, scale=None):
        called.append(edges[id(layer)])
        return call_layer(layer, inputs, training, scale)

    monkeypatch.setattr(mixed_edge, "call_layer", recording)
    for batch in batches:
        code = model.edge_weights(stochastic=True, seed=searcher.step_seed(0))
        called.clear()
        searcher.joint_step(batch)
        expected = []
        for cell in model.cells:
            kind = "reduce" if cell.reduction else "normal"
            for node, node_edges in enumerate(cell.edges):
                weights = code[kind][node].numpy()
                for position, edge in enumerate(node_edges):
                    expected += [(kind, node, position, k)
                                 for k, op in enumerate(edge.candidate_ops)
                                 if op is not None and (weights[position, k] != 0
                                                        or gradient == "full")]
        assert sorted(called) == sorted(expected)
        if gradient == "sampled":
            assert len(called) < 0.5 * len(edges)   # a child, not the supernet
        else:
            assert len(called) == len(edges)        # every op, once
