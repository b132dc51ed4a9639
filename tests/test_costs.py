"""Resource-aware search: op cost tables, the efficiency credit mixed into
EGS sampling (DARTS-EGS Eq. 5), and budgets on the final network."""

import json

import numpy as np
import pytest
import tensorflow as tf

from data_tf.image_datasets import load_image_dataset
from data_tf.search_inputs import make_search_inputs
from datanas.estimators import EnsembleGumbelSoftmax
from datanas.estimators.efficiency import efficiency_credit, mixed_logits
from datanas.searching.config import SearchConfig
from datanas.searching.run import run_search
from datanas.spaces.darts_cnn import costs
from datanas.spaces.darts_cnn.genotype import CONV_PRIMITIVES
from datanas.spaces.darts_cnn.networks import NetworkCIFAR
from datanas.spaces.darts_cnn.random_cells import sample_uniform_genotype
from datanas.spaces.darts_cnn.space import DARTS_CNN, SupernetShape
from datanas.spaces.darts_rnn.space import RecurrentShape
from datanas.core.model_stats import count_multiply_adds, count_parameters

PARAMETRIC = {"sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"}


def _supernet(shape=(8, 8, 1), scope="node", **settings):
    settings = {"num_cells": 3, "init_channels": 4, "num_nodes": 2, "num_samples": 3,
                **settings}
    return DARTS_CNN.build_supernet(SupernetShape(**settings), num_outputs=10, input_shape=shape,
                                    weighting="egs", mode="sparse", num_samples=3, scope=scope,
                                    temperature=5.0, seed=0)


@pytest.mark.parametrize("metric", ["params", "madds"])
def test_cost_tables_match_the_counted_cost_of_single_ops(metric):
    """Cells 0 (normal), 1 and 2 (reduce): every table entry of the normal
    kind is the counted cost of that one op at its input shape; the reduce
    entries are the sums over both reduction cells."""
    model = _supernet(cost=metric, cost_lambda=1.0)
    tables = model.cost_tables
    for cell in model.cells:
        for node, node_edges in enumerate(cell.edges):
            for position, edge in enumerate(node_edges):
                for k, op in enumerate(edge.candidate_ops):
                    counted = 0.0 if op is None else (
                        count_parameters(op) if metric == "params"
                        else count_multiply_adds(op, edge.built_input_shape[1:]))
                    if not cell.reduction:
                        assert tables["normal"][node][position, k] == counted
    sep5 = CONV_PRIMITIVES.index("sep_conv_5x5")
    assert tables["normal"][0][0, sep5] > tables["normal"][0][0, CONV_PRIMITIVES.index(
        "sep_conv_3x3")] > 0
    assert tables["normal"][0][0, CONV_PRIMITIVES.index("none")] == 0


@pytest.mark.parametrize("metric, rtol", [("params", 0.0), ("madds", 1e-5)])
def test_final_tables_plus_fixed_cost_equal_the_counted_final_network(metric, rtol):
    """fixed + the genotype's table entries = what the trainers print for the
    final network (exact for parameters; multiply-adds up to a few scalar ops)."""
    rng = np.random.default_rng(0)
    image = (16, 16, 1)
    tables = costs.final_cost_tables(CONV_PRIMITIVES, 3, 5, 8, image, metric)
    fixed = costs.final_fixed_cost(sample_uniform_genotype(rng, 3, CONV_PRIMITIVES), tables,
                                   CONV_PRIMITIVES, num_classes=10, num_cells=5,
                                   init_channels=8, image_shape=image, metric=metric)
    for _ in range(3):
        genotype = sample_uniform_genotype(rng, 3, CONV_PRIMITIVES)
        model = NetworkCIFAR(genotype, num_classes=10, init_channels=8, layers=5,
                             auxiliary=False)
        model.build((None,) + image)
        counted = (count_parameters(model) if metric == "params"
                   else count_multiply_adds(model, image))
        predicted = fixed + costs.genotype_cost(genotype, tables, CONV_PRIMITIVES)
        np.testing.assert_allclose(predicted, counted, rtol=rtol)


def test_efficiency_credit_favours_cheap_ops_and_is_normalised():
    credit = efficiency_credit([[0.0, 10.0, 100.0], [5.0, 5.0, 5.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(credit.sum(axis=-1), 1.0)
    assert credit[0, 0] > credit[0, 1] > credit[0, 2]
    np.testing.assert_allclose(credit[0, 0] / credit[0, 2], 1.1 / 0.1)   # 1/eps vs 1/(eps+1)
    np.testing.assert_allclose(credit[1], 1 / 3)
    np.testing.assert_allclose(credit[2], 1 / 3)
    with pytest.raises(ValueError, match="finite and >= 0"):
        efficiency_credit([1.0, -2.0])


@pytest.mark.parametrize("num_samples", [1, 3])
def test_sampling_frequencies_follow_the_mixed_distribution(num_samples):
    """20,000 EGS draws from the mixed logits: each op is selected with the
    inclusion probability 1 - (1 - p_k)^M of p = lam h + (1 - lam) l, within
    4.5 standard errors (fixed seed)."""
    logits = tf.constant([2.0, 0.5, -1.0, 0.0, 1.0])
    credit = efficiency_credit([0.0, 3.0, 9.0, 1.0, 9.0])
    lam = 0.25
    p = lam * tf.nn.softmax(logits).numpy() + (1 - lam) * credit
    draws = 20000
    mixed = tf.tile(mixed_logits(logits, credit, lam)[tf.newaxis], [draws, 1])
    codes = EnsembleGumbelSoftmax(num_samples).sample(mixed, seed=tf.constant([3, 4])).numpy()
    expected = 1 - (1 - p) ** num_samples
    error = np.sqrt(expected * (1 - expected) / draws)
    np.testing.assert_array_less(np.abs(codes.mean(axis=0) - expected), 4.5 * error)
    # The learned logits still get the gradient, scaled by lam.
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        plain = tf.nn.log_softmax(logits)[0]
        weighted = mixed_logits(logits, credit, lam)[0]
        mixed_prob = tf.exp(weighted)
        plain_prob = tf.exp(plain)
    np.testing.assert_allclose(tape.gradient(mixed_prob, logits).numpy(),
                               lam * tape.gradient(plain_prob, logits).numpy(), rtol=1e-5)


def test_lower_lambda_lowers_the_expected_cost_of_sampled_children():
    expected = []
    for lam in (1.0, 0.75, 0.5, 0.25):
        model = _supernet(cost="params", cost_lambda=lam)
        for variable in model.architecture_variables:   # a learned, non-uniform distribution
            variable.assign(tf.random.stateless_normal(variable.shape, seed=[1, 2]))
        expected.append(DARTS_CNN.resource_summary(model, DARTS_CNN.derive(model, "sample", 0))
                        ["cost"]["expected_child_cost"])
    assert all(a > b for a, b in zip(expected, expected[1:])), expected


@pytest.mark.parametrize("settings", [SupernetShape, RecurrentShape], ids=["conv", "recurrent"])
def test_every_space_refuses_a_lambda_without_a_cost_and_bad_values(settings):
    with pytest.raises(ValueError, match="needs a cost to trade against"):
        settings(cost_lambda=0.5)
    with pytest.raises(ValueError, match=r"cost_lambda must be in \[0, 1\]"):
        settings(cost="params", cost_lambda=1.5)
    with pytest.raises(ValueError, match="cost must be one of none, params, madds, latency"):
        settings(cost="flops")
    assert settings(cost="madds").resolved_cost_lambda == 0.5


def test_settings_refuse_bad_budgets():
    with pytest.raises(ValueError, match="max_params must be a positive integer"):
        SupernetShape(max_params=0)


def _tiny_search(tmp_path, name, **settings):
    dataset = load_image_dataset("digits")
    inputs = make_search_inputs(dataset, batch_size=32, train_size=128, seed=0)
    model = _supernet(num_cells=3, **settings)
    result = run_search(model, inputs, SearchConfig(epochs=1, seed=0), str(tmp_path / name),
                        verbose=0)
    return model, result, json.loads((tmp_path / name / "search_result.json").read_text())


def test_cost_aware_search_derives_fewer_parametric_ops(tmp_path):
    """Same seed, --cost=params: lam = 0.25 derives cells with fewer
    parametric ops than lam = 1.0, and the results record the costs."""
    pytest.importorskip("sklearn")
    counts, results = {}, {}
    for lam in (1.0, 0.25):
        _, result, final = _tiny_search(tmp_path, f"lam{lam}", cost="params", cost_lambda=lam)
        counts[lam] = sum(n for op, n in result.genotype.op_counts().items() if op in PARAMETRIC)
        results[lam] = final["cost"]
    assert counts[0.25] < counts[1.0], counts
    assert results[0.25]["expected_child_cost"] < results[1.0]["expected_child_cost"]
    assert results[0.25]["cost_lambda"] == 0.25 and results[0.25]["metric"] == "params"


def test_budget_penalty_has_gradient_and_the_derived_network_fits(tmp_path):
    pytest.importorskip("sklearn")
    settings = dict(final_layers=5, final_init_channels=8)
    probe = _supernet(max_params=10**9, **settings)   # fixed cost of this final network
    fixed = probe.budgets["params"][1]
    # Below the expected final network of the uniform distribution, above
    # the cheapest derived draws: the penalty is active, resampling finds a fit.
    limit = int(fixed + 0.7 * (float(probe.expected_final_cost("params")) - fixed))
    model = _supernet(max_params=limit, **settings)
    with tf.GradientTape() as tape:
        penalty = model.architecture_penalty()
    grads = tape.gradient(penalty, model.architecture_variables)
    assert float(penalty) > 0, "the uniform distribution's expected network is over budget"
    assert any(float(tf.norm(g)) > 0 for g in grads if g is not None)

    model, result, final = _tiny_search(tmp_path, "budget", max_params=limit, **settings)
    budget = final["budget"]
    assert budget["limits"] == {"params": limit}
    assert budget["derivations"]["sample"]["within_budget"]
    built = NetworkCIFAR(result.genotype, num_classes=10, init_channels=8, layers=5,
                         auxiliary=False)
    built.build((None, 8, 8, 1))
    assert count_parameters(built) == budget["final_network"]["params"] <= limit
    with pytest.raises(ValueError, match="max_params=10 is not above what the final network"):
        _supernet(max_params=10, **settings)
