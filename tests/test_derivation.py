"""Genotype derivation rules and the genotype <-> edge-weight mapping."""

import numpy as np
import pytest

from datanas.spaces.darts_cnn.derivation import (architecture_probabilities, derive_genotype,
                                genotype_to_weights)
from datanas.spaces.darts_cnn.genotype import CONV_PRIMITIVES, DARTS_V2, Genotype

P = CONV_PRIMITIVES
K = len(P)


def peaked_logits(choices, num_nodes=4, high=12.0):
    """Logits where node j strongly prefers the (input, op) pairs in choices[j]."""
    cells = {}
    for kind in ("normal", "reduce"):
        nodes = []
        for node in range(num_nodes):
            logits = np.zeros((node + 2, K))
            for op, source in choices[node]:
                logits[source, P.index(op)] = high
            nodes.append(logits)
        cells[kind] = nodes
    return cells


def test_sample_rule_recovers_confident_architecture_node_scope():
    choices = [[("sep_conv_3x3", 0), ("skip_connect", 1)], [("dil_conv_5x5", 2)],
               [("max_pool_3x3", 0), ("sep_conv_5x5", 3)], [("avg_pool_3x3", 4)]]
    genotype = derive_genotype(peaked_logits(choices), rule="sample", scope="node",
                               num_samples=7, primitives=P, seed=0)
    for node, pairs in enumerate(genotype.normal):
        assert sorted(pairs) == sorted(choices[node])


def test_sample_rule_is_seeded_and_varies_with_seed():
    logits = {kind: [np.zeros((n + 2, K)) for n in range(4)] for kind in ("normal", "reduce")}
    common = dict(rule="sample", scope="node", num_samples=4, primitives=P)
    a = derive_genotype(logits, seed=1, **common)
    assert a == derive_genotype(logits, seed=1, **common)
    others = {derive_genotype(logits, seed=s, **common) for s in range(2, 8)}
    assert len(others | {a}) > 1


def test_sample_rule_frequencies_follow_inclusion_probability():
    # One node, two inputs; under the node scope p(sep_conv_3x3 from 0) = 0.5.
    logits = np.full((2, K), -30.0)
    logits[0, P.index("sep_conv_3x3")] = 0.0
    logits[1, P.index("skip_connect")] = 0.0
    cells = {"normal": [logits], "reduce": [logits]}
    hits = 0
    trials = 400
    for seed in range(trials):
        g = derive_genotype(cells, rule="sample", scope="node", num_samples=2, primitives=P,
                            seed=seed)
        hits += ("sep_conv_3x3", 0) in g.normal[0]
    expected = 1 - 0.5 ** 2
    assert abs(hits / trials - expected) < 5 * np.sqrt(expected * (1 - expected) / trials)


def test_none_is_dropped_and_empty_node_gets_most_probable_pair():
    logits = np.full((2, K), -5.0)
    logits[:, P.index("none")] = 20.0           # EGS will pick only 'none'
    logits[1, P.index("dil_conv_3x3")] = 1.0    # best non-none pair
    cells = {"normal": [logits], "reduce": [logits]}
    for rule in ("sample", "inclusion", "most_likely"):
        g = derive_genotype(cells, rule=rule, scope="edge", num_samples=1, primitives=P)
        assert g.normal == ((("dil_conv_3x3", 1),),)


def test_darts_rule_keeps_top_two_edges_with_argmax_op():
    logits = np.zeros((4, K))
    logits[0, P.index("sep_conv_3x3")] = 3.0
    logits[2, P.index("max_pool_3x3")] = 2.0
    logits[3, P.index("none")] = 50.0           # strong 'none' must not count
    logits[1, P.index("skip_connect")] = 0.5
    cells = {"normal": [np.zeros((2, K)), np.zeros((3, K)), logits],
             "reduce": [np.zeros((2, K)), np.zeros((3, K)), logits]}
    g = derive_genotype(cells, rule="darts", scope="edge", num_samples=4, primitives=P)
    assert g.normal[2] == (("sep_conv_3x3", 0), ("max_pool_3x3", 2))
    assert all(len(pairs) == 2 for pairs in g.normal)


def test_darts_rule_ranks_edges_by_per_edge_weights():
    # DARTS normalises each edge's ops on its own (Eq. 2).  Edge 2 has the
    # second-largest logit but spreads it over three ops: per edge it is the
    # weakest (p = 0.33), per node it would be the second strongest.
    ops = ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3")
    node = np.array([[0.0, 3.0, -5.0, -5.0],    # edge 0: p(skip) = 0.95
                     [0.0, 2.0, -5.0, -5.0],    # edge 1: p(skip) = 0.88
                     [0.0, 2.5, 2.5, 2.5]])     # edge 2: max p = 0.33
    logits = {kind: [np.zeros((2, 4)), node] for kind in ("normal", "reduce")}
    per_edge = derive_genotype(logits, rule="darts", scope="edge", num_samples=1, primitives=ops)
    assert sorted(s for _, s in per_edge.normal[1]) == [0, 1]
    per_node = derive_genotype(logits, rule="darts", scope="node", num_samples=1, primitives=ops)
    assert sorted(s for _, s in per_node.normal[1]) == [0, 2]


def test_unknown_rule_and_scope():
    cells = {k: [np.zeros((2, K))] for k in ("normal", "reduce")}
    with pytest.raises(ValueError, match="'argmax'"):
        derive_genotype(cells, rule="argmax", scope="node", num_samples=1, primitives=P)
    with pytest.raises(ValueError, match="'cell'"):
        derive_genotype(cells, rule="sample", scope="cell", num_samples=1, primitives=P)


def test_architecture_probabilities_are_normalised():
    cells = {k: [np.random.default_rng(0).normal(size=(n + 2, K)) for n in range(4)]
             for k in ("normal", "reduce")}
    probs = architecture_probabilities(cells, "node", 4, P)
    for node in probs["normal"]:
        p = np.array(node["p"])
        assert abs(p.sum() - 1) < 1e-4
        q = np.array(node["inclusion"])
        np.testing.assert_allclose(q, 1 - (1 - p) ** 4, atol=1e-5)
    probs = architecture_probabilities(cells, "edge", 4, P)
    np.testing.assert_allclose(np.array(probs["reduce"][1]["p"]).sum(axis=1), 1, atol=1e-4)


def test_genotype_to_weights_marks_exactly_the_genotype():
    weights = genotype_to_weights(DARTS_V2, P, 4)
    for kind in ("normal", "reduce"):
        for node, (w, pairs) in enumerate(zip(weights[kind], DARTS_V2.cell(kind))):
            w = w.numpy()
            assert w.shape == (node + 2, K)
            assert w.sum() == len(pairs)
            for op, source in pairs:
                assert w[source, P.index(op)] == 1.0
    with pytest.raises(ValueError, match="has 4 nodes but the network has 3"):
        genotype_to_weights(DARTS_V2, P, 3)
    multi = Genotype(normal=[[("sep_conv_3x3", 0), ("skip_connect", 0)], [("max_pool_3x3", 2)]],
                     normal_concat=[2, 3], reduce=[[("skip_connect", 1)], [("avg_pool_3x3", 0)]],
                     reduce_concat=[2, 3])
    w = genotype_to_weights(multi, P, 2)["normal"][0].numpy()
    assert w[0, P.index("sep_conv_3x3")] == w[0, P.index("skip_connect")] == 1.0
