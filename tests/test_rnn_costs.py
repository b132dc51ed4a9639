"""Resource-aware search in the recurrent space: the cost of each (input,
activation) choice, the efficiency credit mixed into EGS sampling, results,
checkpoints, settings and search_ptb's flags."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from datanas.engine.checkpoints import restore_exactly
from datanas.estimators.efficiency import efficiency_credit
from datanas.searching.config import SearchConfig
from datanas.searching.runs import build_search
from datanas.spaces.darts_rnn import costs
from datanas.spaces.darts_rnn.cells import RecurrentCell
from datanas.spaces.darts_rnn.genotype import RecurrentGenotype
from datanas.spaces.darts_rnn.language_model import RNNSearchModel
from datanas.spaces.darts_rnn.space import DARTS_RNN_SPACE, RecurrentShape
from datanas.core.model_stats import count_parameters
from flags.lm import refuse_budget_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRIMITIVES = ("none", "tanh", "relu", "sigmoid", "identity")
UNITS = 8


def _supernet(scope="node", num_nodes=3, **settings):
    shape = RecurrentShape(num_nodes=num_nodes, hidden_size=UNITS, state_rows=4, **settings)
    return DARTS_RNN_SPACE.build_supernet(shape, num_outputs=20, weighting="egs", mode="sparse",
                                          num_samples=3, scope=scope, temperature=5.0, seed=0)


def _random_genotype(rng, num_nodes, max_pairs=1):
    nodes = []
    for position in range(num_nodes):
        choices = [(name, source) for name in PRIMITIVES[1:] for source in range(position + 1)]
        count = int(rng.integers(1, max_pairs + 1))
        picked = rng.choice(len(choices), size=min(count, len(choices)), replace=False)
        nodes.append([choices[int(i)] for i in picked])
    return RecurrentGenotype(nodes, tuple(range(1, num_nodes + 1)))


def _built_cell(genotype):
    cell = RecurrentCell(genotype, UNITS)
    cell.build((None, UNITS))
    return cell


def _profiled_madds(cell):
    spec = tf.TensorSpec((1, UNITS), tf.float32)
    graph = tf.function(lambda x, h: cell.step(x, h)).get_concrete_function(spec, spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops / 2


def test_params_cost_is_refused_every_cell_of_n_nodes_has_the_same_parameters():
    """One map per node (DARTS): the parameters do not depend on the choices,
    so a params credit would steer nothing; asking for it is one line."""
    rng = np.random.default_rng(0)
    counts = {count_parameters(_built_cell(_random_genotype(rng, 4, max_pairs=3)))
              for _ in range(4)}
    assert counts == {(UNITS + UNITS) * 2 * UNITS + 4 * UNITS * 2 * UNITS}
    with pytest.raises(ValueError) as error:
        RecurrentShape(num_nodes=2, hidden_size=UNITS, cost="params", cost_lambda=0.5)
    assert str(error.value) == (
        "cost='params': every recurrent cell of N nodes has the same parameters (W_0 and one "
        "map per node, as in DARTS), so no choice changes them; use one of madds, latency.")


def test_madds_table_charges_each_choice_its_edge_product():
    terms = costs.cell_costs(UNITS, PRIMITIVES, "madds")
    tables = costs.cost_tables(terms, PRIMITIVES, 4)
    assert [t.shape for t in tables] == [(1, 5), (2, 5), (3, 5), (4, 5)]
    assert all(np.all(t[:, 0] == 0) for t in tables)          # none is free
    assert np.all(tables[2][:, 1:] == 2 * UNITS * UNITS + 0.5 * UNITS + 2 * UNITS)
    # Several activations on one edge share its product: the table charges
    # each the whole product, the cell's cost charges it once.
    shared = RecurrentGenotype([[("tanh", 0), ("relu", 0)], [("sigmoid", 1)]], (1, 2))
    assert costs.genotype_cost(shared, terms) == 2 * terms.map + 3 * 2 * UNITS


def test_madds_terms_match_the_profiled_cell():
    terms = costs.cell_costs(UNITS, PRIMITIVES, "madds")
    rng = np.random.default_rng(1)
    genotypes = [_random_genotype(rng, 4), _random_genotype(rng, 4, max_pairs=3),
                 RecurrentGenotype([[("tanh", 0)], [("relu", 0), ("identity", 1)]], (2,))]
    for genotype in genotypes:
        assert costs.cell_cost(genotype, terms) == _profiled_madds(_built_cell(genotype))


def test_supernet_samples_from_the_mixed_distribution():
    lam = 0.4
    model = _supernet(cost="madds", cost_lambda=lam)
    assert model.cost_lambda == lam and len(model.credit_variables) == 3
    logits = tf.random.stateless_normal((3, 5), seed=[3, 4])
    model.arch_logits[2].assign(logits)
    # p = lam * softmax + (1 - lam) * credit, the credit from the madds table.
    credit = efficiency_credit(np.asarray(model.cost_tables[2]).reshape(-1))
    p = lam * tf.nn.softmax(tf.reshape(logits, [-1])).numpy() + (1 - lam) * credit
    np.testing.assert_allclose(np.exp(model.sampling_logits(2).numpy()), p, rtol=1e-5)
    assert credit[0] > 10 * credit[1]                     # none is free, the matmuls are not

    draws = 1500
    sample = tf.function(lambda seed: model.edge_weights(True, seed)[2])
    codes = np.stack([sample(tf.constant([7, i], tf.int64)).numpy().reshape(-1)
                      for i in range(draws)])
    expected = 1 - (1 - p) ** model.num_samples
    error = np.sqrt(expected * (1 - expected) / draws)
    np.testing.assert_array_less(np.abs(codes.mean(axis=0) - expected), 4.5 * error)
    # ... which is not the learned distribution: none is sampled far more often.
    learned = 1 - (1 - tf.nn.softmax(tf.reshape(logits, [-1])).numpy()) ** model.num_samples
    none = [source * 5 for source in range(3)]
    assert np.all(codes.mean(axis=0)[none] > learned[none] + 10 * error[none])

    # Inclusion codes, every derivation rule and the probabilities file read p too.
    probabilities = DARTS_RNN_SPACE.probabilities(model)
    np.testing.assert_allclose(np.asarray(probabilities["recurrent"][2]["p"]).reshape(-1), p,
                               atol=2e-6)
    wanted = expected >= 0.5
    if not wanted.any():                   # the deterministic code's fallback: argmax of p
        wanted[np.argmax(p)] = True
    deterministic = model.edge_weights(False)[2].numpy().reshape(-1)
    np.testing.assert_array_equal(deterministic, wanted.astype(np.float32))


def test_lower_lambda_lowers_the_expected_madds_of_sampled_children():
    expected, sampled = [], []
    for lam in (1.0, 0.75, 0.5, 0.25):
        model = _supernet(num_nodes=4, cost="madds", cost_lambda=lam)
        for position, variable in enumerate(model.architecture_variables):
            variable.assign(tf.random.stateless_normal(variable.shape, seed=[1, position]))
        genotype = DARTS_RNN_SPACE.derive(model, "sample", 0)
        cost = DARTS_RNN_SPACE.resource_summary(model, genotype)["cost"]
        assert cost["metric"] == "madds" and cost["cost_lambda"] == lam
        assert cost["derived_child_cost"] == costs.genotype_cost(genotype, model.cost_terms)
        expected.append(cost["expected_child_cost"])
        sampled.append(np.mean([costs.genotype_cost(DARTS_RNN_SPACE.derive(model, "sample", s),
                                                    model.cost_terms) for s in range(60)]))
    assert all(a > b for a, b in zip(expected, expected[1:])), expected
    assert sampled[-1] < 0.8 * sampled[0], sampled
    # The expectation is exact: a matmul counted once per used edge.
    assert abs(sampled[0] - expected[0]) < 0.15 * expected[0], (sampled[0], expected[0])


def test_checkpoint_and_config_keep_a_measured_latency_credit(tmp_path):
    model = _supernet(scope="edge", cost="latency", cost_lambda=0.5)
    assert model.cost_terms.map > 0 and model.cost_tables[0][0, 0] == 0
    saved = [v.numpy() for v in model.credit_variables]
    assert not np.allclose(saved[1], 0.2)                      # not the uniform start
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))

    config = model.get_config()
    assert config["cost_lambda"] == 0.5
    resumed = RNNSearchModel.from_config(config)
    assert resumed.get_config() == config
    assert resumed.cost_lambda == 0.5 and resumed.egs_scope == "edge"
    np.testing.assert_allclose(resumed.credit_variables[1].numpy(), 0.2)   # uniform per edge
    restore_exactly(tf.train.Checkpoint(model=resumed), path)
    for before, after in zip(saved, resumed.credit_variables):
        np.testing.assert_array_equal(before, after.numpy())
    np.testing.assert_array_equal(resumed.sampling_logits(2).numpy(),
                                  model.sampling_logits(2).numpy())
    # Without a cost nothing changes: no credit, no cost_lambda in the config.
    plain = _supernet()
    assert plain.credit_variables == [] and "cost_lambda" not in plain.get_config()
    assert DARTS_RNN_SPACE.resource_summary(plain, DARTS_RNN_SPACE.derive(plain, "darts", 0)) == {}


def test_bad_settings_give_one_clear_error():
    # (lambda/cost values: tests/test_costs.py, for every space's settings)
    shape = RecurrentShape(num_nodes=2, hidden_size=UNITS, state_rows=4, cost="madds",
                           cost_lambda=0.5)
    with pytest.raises(ValueError) as error:
        build_search("darts", 20, None, SearchConfig(epochs=1), shape, space="darts_rnn")
    assert str(error.value) == ("cost_lambda=0.5 (resource-aware sampling) needs a weighting "
                                "that samples binary codes ('egs': DATA, GDAS); got "
                                "weighting='softmax'.")
    with pytest.raises(ValueError, match="--max_params: budgets on the final network exist "
                                         "for the conv space only"):
        refuse_budget_flags(["search_ptb", "--cost=params", "--max_params=1000"])
    refuse_budget_flags(["search_ptb", "--cost=params", "--", "--max_params=1"])   # not a flag


def test_search_ptb_with_a_cost(ptb_dir, tmp_path):
    """One tiny search: the printed line, the costs in the result, and the
    probabilities file holding the mixed p (its none mass >= (1 - lam) *
    the credit's, ~0.55 here; the learned distribution alone has ~0.2)."""
    model_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.search_ptb", f"--data_dir={ptb_dir}",
         f"--model_dir={model_dir}", "--epochs=1", "--nodes=2", f"--hidden_size={UNITS}",
         "--batch_size=8", "--bptt=8", "--train_tokens=1500", "--eval_batch_size=4",
         "--seed=1", "--M=2", "--cost=madds", "--cost_lambda=0.25"],
        cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resource-aware sampling: cost=madds, lambda=0.25" in proc.stdout
    result = json.loads((model_dir / "search_result.json").read_text())["cost"]
    genotype = RecurrentGenotype.from_dict(json.loads((model_dir / "genotype.json").read_text()))
    terms = costs.cell_costs(UNITS, PRIMITIVES, "madds")
    assert result["derived_child_cost"] == costs.genotype_cost(genotype, terms)
    assert result["metric"] == "madds" and result["cost_lambda"] == 0.25
    # below every edge's product and every pair's own term (3 edges, 12 pairs)
    assert 0 < result["expected_child_cost"] < 3 * terms.map + 12 * terms.own["tanh"]
    credit_none = 10 / (10 + 4 / 1.1)
    for node in json.loads((model_dir / "arch_probabilities.json").read_text())["recurrent"]:
        none_mass = sum(row[0] for row in node["p"])
        assert none_mass >= 0.75 * credit_none - 1e-5, node
