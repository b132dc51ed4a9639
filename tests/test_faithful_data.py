"""DATA as its authors wrote it (XinbangZhang/DATA-NAS):

* the "full" EGS gradient of a sparse edge equals the authors' all-ops form
  (every op times its 0/1 weight, the weights divided by the edge's count of
  non-none ones) for every code bit and every weight, while undrawn ops'
  weights get exactly zero gradient; the "sampled" form is the old one;
* an edge's code is divided by its non-none count, with the gradient through
  the division (``gumbel_sample``);
* the authors' derivations: ``node_sample`` (M draws over the node's
  flattened probabilities, at most M pairs) and ``node_infer``
  (``infer_prob``).
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from datanas.estimators import EnsembleGumbelSoftmax
from datanas.layers import MixedEdge
from datanas.spaces.darts_cnn.derivation import derive_genotype, genotype_to_weights
from datanas.spaces.darts_cnn.genotype import CONV_PRIMITIVES, Genotype
from datanas.spaces.darts_cnn.supernet import SearchNetwork, combine_edge_code
from datanas.spaces.node_rules import (exact_selection_probability, most_probable_selection,
                                       node_sample_code)

C = 4
K = len(CONV_PRIMITIVES)
NON_NONE = np.array([name != "none" for name in CONV_PRIMITIVES], np.float32)
# A fixed code: three ops drawn (one of them a parametric convolution), the
# others not, 'none' among the undrawn.
DRAWN = ("max_pool_3x3", "sep_conv_3x3", "dil_conv_5x5")


def inputs(seed=0, batch=3, size=6):
    return tf.constant(np.random.default_rng(seed).normal(size=[batch, size, size, C]),
                       tf.float32)


def edge_pair(gradient, skip="cond", stride=1):
    """A sparse edge with `gradient` and a dense edge with the same variables."""
    sparse = MixedEdge(C, stride, mode="sparse", gradient=gradient, skip=skip)
    dense = MixedEdge(C, stride, mode="dense")
    x = inputs()
    sparse(x, tf.zeros([K]), training=False)
    dense(x, tf.zeros([K]), training=False)
    rng = np.random.default_rng(1)
    dense.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.3
                       if "moving" not in v.path else w
                       for v, w in zip(dense.weights, dense.get_weights())])
    sparse.set_weights(dense.get_weights())
    return sparse, dense


def mean_code():
    bits = np.array([1.0 if name in DRAWN else 0.0 for name in CONV_PRIMITIVES], np.float32)
    return bits / bits[NON_NONE > 0].sum()


def gradients(edge, weights_value, call):
    """d(loss)/d(code weights), d(loss)/d(each op's variables), d(loss)/dx."""
    x = tf.Variable(inputs())
    weights = tf.Variable(weights_value)
    upstream = tf.constant(np.random.default_rng(2).normal(
        size=edge.compute_output_shape(x.shape)), tf.float32)
    with tf.GradientTape() as tape:
        y = call(edge, x, weights)
        loss = tf.reduce_sum(y * upstream)
    op_vars = [list(op.trainable_variables) if op is not None else []
               for op in edge.candidate_ops]
    flat = [v for vs in op_vars for v in vs]
    sources = [weights, x] + flat
    grads = [tf.zeros_like(v) if g is None else g
             for v, g in zip(sources, tape.gradient(loss, sources))]
    out, position = [], 2
    for vs in op_vars:
        out.append([g.numpy() for g in grads[position:position + len(vs)]])
        position += len(vs)
    return y.numpy(), grads[0].numpy(), grads[1].numpy(), out


def eager_call(edge, x, weights):
    return edge(x, weights, training=True)


def graph_call(edge, x, weights):
    return tf.function(lambda a, w: edge(a, w, training=True))(x, weights)


@pytest.mark.parametrize("skip,call", [("cond", graph_call), ("examples", graph_call),
                                       ("cond", eager_call)],
                         ids=["graph-cond", "graph-examples", "eager"])
def test_full_gradient_equals_the_authors_all_ops_form(skip, call):
    sparse, dense = edge_pair("full", skip=skip)
    code = mean_code()
    y_s, dw_s, dx_s, dop_s = gradients(sparse, code, call)
    y_d, dw_d, dx_d, dop_d = gradients(dense, code, call)
    np.testing.assert_allclose(y_s, y_d, rtol=1e-5, atol=1e-5)
    # Every bit, drawn or not, gets <dL/dy, o_k(x)> (none's op is 0: no signal).
    np.testing.assert_allclose(dw_s, dw_d, rtol=1e-4, atol=1e-4)
    undrawn = [k for k, name in enumerate(CONV_PRIMITIVES)
               if name not in DRAWN and name != "none"]
    assert all(abs(dw_s[k]) > 1e-3 for k in undrawn), dw_s
    np.testing.assert_allclose(dx_s, dx_d, rtol=1e-4, atol=1e-4)
    for k, (g_s, g_d) in enumerate(zip(dop_s, dop_d)):
        for a, b in zip(g_s, g_d):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
            if CONV_PRIMITIVES[k] not in DRAWN:
                assert not np.any(a), f"undrawn {CONV_PRIMITIVES[k]} got a weight gradient"


@pytest.mark.parametrize("skip", ["cond", "examples"])
def test_sampled_gradient_gives_undrawn_bits_nothing(skip):
    sampled, dense = edge_pair("sampled", skip=skip)
    code = mean_code()
    y_s, dw_s, dx_s, _ = gradients(sampled, code, graph_call)
    y_d, dw_d, dx_d, _ = gradients(dense, code, graph_call)
    np.testing.assert_allclose(y_s, y_d, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx_s, dx_d, rtol=1e-4, atol=1e-4)
    for k, name in enumerate(CONV_PRIMITIVES):
        if name in DRAWN:
            np.testing.assert_allclose(dw_s[k], dw_d[k], rtol=1e-4, atol=1e-4)
        else:
            assert dw_s[k] == 0.0


def test_edge_mean_divides_by_the_non_none_count_with_its_gradient():
    rng = np.random.default_rng(0)
    logits = tf.Variable(rng.normal(size=[5, K]).astype(np.float32))
    egs = EnsembleGumbelSoftmax(num_samples=4, temperature=2.0)
    seed = tf.constant([3, 4], tf.int64)
    upstream = tf.constant(rng.normal(size=[5, K]).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        code = egs.sample(logits, seed=seed)
        ours = combine_edge_code(code, CONV_PRIMITIVES, "mean")
        # The authors' gumbel_sample: divide by the sum of the non-none
        # bits (their 'none' is the first op, as here) plus 1e-9.
        theirs = code / (tf.reduce_sum(code[:, 1:], axis=-1, keepdims=True) + 1e-9)
        loss_ours = tf.reduce_sum(ours * upstream)
        loss_theirs = tf.reduce_sum(theirs * upstream)
    bits = code.numpy()
    assert np.all(bits[:, 1:].sum(-1) >= 1), "pick a seed whose rows all draw a non-none op"
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours.numpy()[:, 1:].sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(loss_ours, logits).numpy(),
                               tape.gradient(loss_theirs, logits).numpy(), rtol=1e-5, atol=1e-7)
    # A row that drew only 'none' stays zero instead of dividing by 0.
    only_none = tf.one_hot([0], K)
    np.testing.assert_array_equal(combine_edge_code(only_none, CONV_PRIMITIVES, "mean").numpy(),
                                  only_none.numpy())
    np.testing.assert_array_equal(combine_edge_code(code, CONV_PRIMITIVES, "sum").numpy(), bits)


def test_supernet_codes_are_edge_means_and_the_variants_serialize():
    model = SearchNetwork(10, init_channels=4, num_cells=3, num_nodes=2, num_samples=4)
    model.build((None, 8, 8, 1))
    assert (model.egs_scope, model.egs_gradient, model.edge_combine) == ("edge", "full", "mean")
    weights = model.edge_weights(stochastic=True, seed=tf.constant([0, 1], tf.int64))
    for node in weights["normal"] + weights["reduce"]:
        counts = node.numpy()[:, 1:]
        drawn = (counts > 0).sum(-1)
        np.testing.assert_allclose(counts.sum(-1)[drawn > 0], 1.0, rtol=1e-6)
    config = model.get_config()
    assert config["egs_gradient"] == "full" and config["edge_combine"] == "mean"
    variant = SearchNetwork.from_config({**config, "egs_gradient": "sampled",
                                         "edge_combine": "sum"})
    assert (variant.egs_gradient, variant.edge_combine) == ("sampled", "sum")
    with pytest.raises(ValueError, match="egs_gradient must be one of full, sampled; got 'all'"):
        SearchNetwork(10, egs_gradient="all")
    with pytest.raises(ValueError, match="edge_combine must be one of mean, sum; got 'max'"):
        SearchNetwork(10, edge_combine="max")


def test_a_genotype_inside_the_supernet_is_weighted_as_the_authors_genotype2weight():
    genotype = Genotype(normal=[[("sep_conv_3x3", 0), ("skip_connect", 0), ("max_pool_3x3", 1)]],
                        normal_concat=[2], reduce=[[("avg_pool_3x3", 1)]], reduce_concat=[2])
    mean = genotype_to_weights(genotype, CONV_PRIMITIVES, 1, edge_combine="mean")
    row0 = mean["normal"][0].numpy()[0]
    assert row0[CONV_PRIMITIVES.index("sep_conv_3x3")] == pytest.approx(0.5)
    assert row0[CONV_PRIMITIVES.index("skip_connect")] == pytest.approx(0.5)
    assert mean["normal"][0].numpy()[1].max() == 1.0
    summed = genotype_to_weights(genotype, CONV_PRIMITIVES, 1)
    assert summed["normal"][0].numpy()[0].max() == 1.0


def test_exact_selection_probability_matches_enumerating_every_draw_sequence():
    probs = np.array([0.4, 0.3, 0.2, 0.1])
    num_samples = 3
    for size in (1, 2, 3, 4):
        subset = set(range(size))
        brute = sum(np.prod([probs[i] for i in draws])
                    for draws in itertools.product(range(4), repeat=num_samples)
                    if set(draws) == subset)
        assert exact_selection_probability(probs[:size], num_samples) == pytest.approx(
            brute, abs=1e-12)


def test_node_infer_picks_the_most_probable_exact_selection():
    # One dominant pair: one draw-set {0} is most probable.
    assert list(most_probable_selection([0.9, 0.05, 0.05], 4)) == [0]
    # Two equal pairs: M=4 draws most probably select both.
    assert sorted(most_probable_selection([0.5, 0.5, 0.0, 0.0], 4)) == [0, 1]
    # Never more than M.
    assert len(most_probable_selection(np.full(20, 0.05), 3)) <= 3


def test_node_sample_keeps_at_most_m_pairs_with_the_flattened_frequencies():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=[3, K]) * 1.5
    num_samples = 4
    egs = EnsembleGumbelSoftmax(num_samples=num_samples, temperature=1.0)
    flat = np.exp(logits.reshape(-1) - logits.max())
    flat /= flat.sum()
    expected = 1.0 - (1.0 - flat) ** num_samples
    draws = 1500
    counts = np.zeros(flat.size)
    for seed in range(draws):
        code = node_sample_code(egs, logits, [7, seed]).reshape(-1)
        assert code.sum() <= num_samples
        counts += code
    freq = counts / draws
    standard_error = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(freq - expected) <= 4.5 * standard_error + 1e-9), (freq, expected)


@pytest.mark.parametrize("rule", ["node_sample", "node_infer"])
def test_authors_rules_give_at_most_m_non_none_pairs_per_node(rule):
    rng = np.random.default_rng(1)
    logits = {kind: [rng.normal(size=[node + 2, K]) for node in range(4)]
              for kind in ("normal", "reduce")}
    for num_samples in (1, 4, 7):
        genotype = derive_genotype(logits, rule=rule, scope="edge", num_samples=num_samples,
                                   primitives=CONV_PRIMITIVES, seed=3)
        for kind in ("normal", "reduce"):
            for pairs in genotype.cell(kind):
                assert 1 <= len(pairs) <= num_samples
                assert all(op != "none" for op, _ in pairs)
