"""The recurrent space: genotypes, cells, the LM supernet, perplexity, and tiny
searches and trainings on PTB's real text."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from datanas.spaces import get_space
from datanas.spaces.darts_rnn.cells import RecurrentCell, SearchRecurrentCell
from datanas.spaces.darts_rnn.genotype import (DARTS_RNN, GenotypeError, RecurrentGenotype,
                                              load_recurrent_genotype)
from datanas.spaces.darts_rnn.language_model import (RNNLanguageModel, RNNSearchModel,
                                                     combine_edge_code)
from datanas.tasks import LanguageModelingTask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
PRIMITIVES = ("none", "tanh", "relu", "sigmoid", "identity")


# -- genotypes ------------------------------------------------------------------------------------

def test_genotype_json_round_trip_and_file(tmp_path):
    genotype = RecurrentGenotype([[("tanh", 0)], [("relu", 1), ("sigmoid", 0)]], [1, 2])
    path = tmp_path / "genotype.json"
    path.write_text(genotype.to_json())
    assert json.loads(path.read_text()) == {"recurrent": [[["tanh", 0]],
                                                          [["relu", 1], ["sigmoid", 0]]],
                                            "concat": [1, 2]}
    assert load_recurrent_genotype(tmp_path) == genotype
    assert genotype.edges() == [(1, 0), (2, 0), (2, 1)]


@pytest.mark.parametrize("data, message", [
    ({"recurrent": [[["tanh", 1]]], "concat": [1]}, "node 1, pair 1: input 1 is not allowed; "
                                                    "node 1 may take inputs 0..0"),
    ({"recurrent": [[["tahn", 0]]], "concat": [1]}, "did you mean 'tanh'"),
    ({"recurrent": [[["none", 0]]], "concat": [1]}, "'none' is not allowed"),
    ({"recurrent": [[["tanh", 0], ["tanh", 0]]], "concat": [1]}, "is repeated"),
    ({"recurrent": [[["tanh", 0]]], "concat": [0]}, "node index 0 is not allowed; allowed: 1..1"),
    ({"recurrent": [[["tanh", 0]]]}, "exactly the keys recurrent, concat"),
    ({"recurrent": [[]], "concat": [1]}, "non-empty list"),
])
def test_bad_genotypes_give_one_line_errors(data, message):
    with pytest.raises(GenotypeError) as error:
        RecurrentGenotype.from_dict(data, source="g.json")
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "g.json" in str(error.value)


# -- cells ----------------------------------------------------------------------------------------

def _manual_cell(cell, x, h):
    """The genotype's equations in numpy, from the cell's own weights."""
    def act(name, v):
        return {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0),
                "sigmoid": lambda a: 1 / (1 + np.exp(-a)), "identity": lambda a: a}[name](v)

    def highway(state, projected, name):
        gate, candidate = np.split(projected, 2, axis=-1)
        return state + 1 / (1 + np.exp(-gate)) * (act(name, candidate) - state)

    w_init = cell.w_init.numpy()
    states = [highway(h, np.concatenate([x, h], -1) @ w_init, "tanh")]
    for position, pairs in enumerate(cell.genotype.recurrent):
        w = cell.node_map(position + 1).numpy()          # one map per node, every input
        sources = sorted({s for _, s in pairs})
        states.append(np.mean([np.mean([highway(states[s], states[s] @ w, n)
                                        for n, t in pairs if t == s], axis=0)
                               for s in sources], axis=0))
    return np.mean([states[i] for i in cell.genotype.concat], axis=0)


def test_found_cell_is_a_keras_rnn_cell_that_reloads_from_json(tmp_path):
    """The genotype JSON -> RecurrentCell -> keras.layers.RNN in someone's functional
    model; the outputs follow the cell's equations and survive a .keras round trip."""
    genotype = RecurrentGenotype.from_json(
        RecurrentGenotype([[("tanh", 0)], [("relu", 1), ("identity", 0), ("tanh", 0)],
                           [("sigmoid", 2)]], [1, 2, 3]).to_json())
    inputs = keras.Input((5, 3))
    rnn = keras.layers.RNN(RecurrentCell(genotype, 4, seed=1), return_sequences=True)
    model = keras.Model(inputs, keras.layers.Dense(2)(rnn(inputs)))
    # One map per node (DARTS), whatever the node's number of pairs: W_0 + 3.
    assert sorted(v.name for v in rnn.cell.weights) == ["w_init", "w_node1", "w_node2",
                                                        "w_node3"]
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    sequence = keras.Model(inputs, rnn.output)(x).numpy()
    cell, h = rnn.cell, np.zeros((2, 4), np.float32)
    for t in range(5):
        h = _manual_cell(cell, x[:, t], h)
        np.testing.assert_allclose(sequence[:, t], h, rtol=1e-5, atol=1e-6)
    path = tmp_path / "rnn.keras"
    model.save(path)
    np.testing.assert_allclose(keras.saving.load_model(path)(x), model(x), rtol=1e-6)


def _search_cell(mode="sparse", units=6, nodes=3, egs_gradient="full"):
    cell = SearchRecurrentCell(units, nodes, PRIMITIVES, mode=mode, seed=3,
                               egs_gradient=egs_gradient)
    cell.build((None, units))
    return cell


def _codes(pairs_per_node, nodes=3):
    """Binary edge weights: pairs_per_node[i] = [(activation, input), ...]."""
    weights = []
    for position in range(nodes):
        matrix = np.zeros((position + 1, len(PRIMITIVES)), np.float32)
        for name, source in pairs_per_node[position]:
            matrix[source, PRIMITIVES.index(name)] = 1.0
        weights.append(tf.constant(matrix))
    return weights


def test_search_cell_has_one_map_per_node_and_one_batch_norm():
    """DARTS' search cell: ``_Ws[i]`` per node (not per (node, input) edge) and
    one ``BatchNorm1d`` for every node: 1 + nodes maps, one pair of statistics."""
    cell = _search_cell(nodes=4)
    assert sorted(v.name for v in cell.trainable_variables) == [
        "w_init", "w_node1", "w_node2", "w_node3", "w_node4"]
    assert [tuple(v.shape) for v in cell.non_trainable_variables] == [(6,), (6,)]
    moments = tf.random.stateless_uniform([7, 5, 2, 6], seed=[1, 2])
    cell.update_moving_statistics(moments, momentum=0.5)
    np.testing.assert_allclose(cell.moving_mean.numpy(),
                               0.5 * tf.reduce_mean(moments[:, :, 0], axis=[0, 1]), rtol=1e-6)


@pytest.mark.parametrize("egs_gradient", ["full", "sampled"])
def test_search_cell_sparse_equals_dense_for_a_binary_code(egs_gradient):
    sparse, dense = _search_cell("sparse", egs_gradient=egs_gradient), _search_cell("dense")
    dense.set_weights(sparse.get_weights())
    rng = np.random.default_rng(1)
    x, h = (tf.constant(rng.normal(size=(5, 6)), tf.float32) for _ in range(2))
    code = _codes([[("tanh", 0)], [("relu", 1), ("sigmoid", 0)], [("identity", 2)]])
    for training in (True, False):
        a, _ = sparse.step(x, h, code, training=training)
        b, _ = dense.step(x, h, code, training=training)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _gradients(cell, x, h, code, probe):
    code = [tf.Variable(c) for c in code]
    with tf.GradientTape() as tape:
        out, _ = cell.step(x, h, code, training=True)
        # (a plain sum of batch-normalised states is constant; weigh them)
        loss = tf.reduce_sum(out * probe)
    grads = tape.gradient(loss, cell.trainable_variables + code)
    names = [v.name for v in cell.trainable_variables]
    return dict(zip(names, grads)), [np.zeros(c.shape) if g is None else g.numpy()
                                    for c, g in zip(code, grads[len(names):])]


def test_full_gradient_reaches_undrawn_bits_but_not_their_weights():
    """egs_gradient="full": an undrawn pair runs forward only, so its bit gets
    <dL/dy, highway> -- the gradient of DARTS' dense sum at the same code --
    while the maps get exactly the gradient of the sampled child (none at all
    for node 2, whose pairs are all undrawn).  "sampled" gives undrawn bits 0."""
    rng = np.random.default_rng(2)
    x, h, probe = (tf.constant(rng.normal(size=(4, 6)), tf.float32) for _ in range(3))
    code = _codes([[("tanh", 0)], [], [("identity", 2), ("tanh", 0)]])
    full, sampled, dense = (_search_cell("sparse", egs_gradient="full"),
                            _search_cell("sparse", egs_gradient="sampled"), _search_cell("dense"))
    full_w, full_bits = _gradients(full, x, h, code, probe)
    sampled_w, sampled_bits = _gradients(sampled, x, h, code, probe)
    _, dense_bits = _gradients(dense, x, h, code, probe)
    assert full_w["w_node2"] is None and sampled_w["w_node2"] is None
    for name, grad in full_w.items():
        if grad is not None:
            np.testing.assert_allclose(grad, sampled_w[name], rtol=1e-5, atol=1e-7)
    for a, b, drawn in zip(full_bits, dense_bits, code):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        undrawn = drawn.numpy() == 0
        undrawn[:, 0] = False                                   # none has no output
        undrawn[2:] = False          # s_2 = 0 (node 2 has no pair): tanh/relu(0) = 0
        assert np.all(np.abs(a[undrawn]) > 0)
    for bits, drawn in zip(sampled_bits, code):
        assert np.all(bits[:, 1:][drawn.numpy()[:, 1:] == 0] == 0)


def test_sampled_gradient_skips_unselected_edges():
    """egs_gradient="sampled": an edge none of whose activations is selected
    runs no matmul; a node without pairs gives its map no gradient, and a code
    with other edges runs through the same trace."""
    cell = _search_cell("sparse", egs_gradient="sampled")
    rng = np.random.default_rng(2)
    x, h = (tf.constant(rng.normal(size=(4, 6)), tf.float32) for _ in range(2))
    code = _codes([[("tanh", 0)], [], [("identity", 2), ("tanh", 0)]])
    grads, _ = _gradients(cell, x, h, code, tf.constant(rng.normal(size=(4, 6)), tf.float32))
    assert {name for name, grad in grads.items() if grad is not None} == {
        "w_init", "w_node1", "w_node3"}
    step = tf.function(lambda x, h, *code: cell.step(x, h, list(code), training=True)[0])
    step(x, h, *code)
    other = _codes([[("relu", 0)], [("sigmoid", 0)], [("tanh", 1)]])
    step(x, h, *other)
    assert step.experimental_get_tracing_count() == 1


def test_edge_mean_divides_each_edge_code_by_its_selected_activations():
    """edge_combine="mean" (default): a (node, input) edge with two selected
    activations outputs their mean (the DATA authors' gumbel_sample divides by
    the count); "sum" adds them; none does not count; softmax weights are
    left alone.  Both names are in the config."""
    code = tf.constant([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 1, 1, 1]], tf.float32)
    mean = combine_edge_code(code, PRIMITIVES, "mean").numpy()
    np.testing.assert_allclose(mean, [[0.5, 0.5, 0.5, 0, 0], [1, 0, 0, 0, 0],
                                      [0, 0, 1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    np.testing.assert_array_equal(combine_edge_code(code, PRIMITIVES, "sum"), code)
    model = RNNSearchModel(30, hidden_size=8, num_nodes=3, num_samples=4, state_rows=4, seed=1)
    assert (model.get_config()["egs_gradient"], model.get_config()["edge_combine"]) == (
        "full", "mean")
    for weights in model.edge_weights(True, seed=tf.constant([3, 4], tf.int64)):
        sums = weights.numpy()[:, 1:].sum(axis=1)
        assert np.all((np.abs(sums - 1) < 1e-6) | (sums == 0)), weights
    summed = RNNSearchModel.from_config({**model.get_config(), "edge_combine": "sum",
                                         "egs_gradient": "sampled"})
    assert summed.cell.egs_gradient == "sampled"
    genotype = RecurrentGenotype([[("tanh", 0)], [("tanh", 1), ("relu", 1)],
                                  [("relu", 0), ("sigmoid", 2)]], (1, 2, 3))
    space = get_space("darts_rnn")
    assert space.child_weights(model, genotype)[1].numpy()[1, 1] == 0.5
    assert space.child_weights(summed, genotype)[1].numpy()[1, 1] == 1.0
    softmax = RNNSearchModel(30, hidden_size=8, num_nodes=2, weighting="softmax",
                             mode="dense", egs_scope="edge", state_rows=4, seed=1)
    np.testing.assert_allclose(tf.reduce_sum(softmax.edge_weights(False)[1], axis=1), [1, 1],
                               rtol=1e-6)
    for kwargs, message in (({"edge_combine": "avg"}, "edge_combine must be one of mean, sum"),
                            ({"egs_gradient": "all"}, "egs_gradient must be one of full, "
                                                      "sampled")):
        with pytest.raises(ValueError, match=message):
            RNNSearchModel(30, hidden_size=8, num_nodes=2, state_rows=4, **kwargs)


def test_final_network_parameters_at_the_paper_sizes():
    """One map per node: a cell of N nodes has (2H) x 2H (W_0) + N x H x 2H
    weights whatever its pairs, plus the tied embedding/decoder V x H and the
    bias V.  At the paper's PTB size (H = 850, V = 10000) DARTS' 8-node cell
    gives the 23 M of Table 3; DATA's 12 nodes give 28.7 M."""
    def expected(vocab, hidden, nodes):
        return vocab * hidden + vocab + 2 * hidden * 2 * hidden + nodes * hidden * 2 * hidden

    def trainable(model):
        return sum(int(np.prod(v.shape)) for v in model.trainable_variables)

    several = RecurrentGenotype([[("tanh", 0), ("relu", 0)]] + [
        [("relu", i), ("sigmoid", 0), ("identity", i - 1)] for i in range(1, 12)],
        tuple(range(1, 13)))
    assert len(several.edges()) == 33        # (one map per edge would be 33 maps)
    data = RNNLanguageModel(several, 10000, hidden_size=850, seed=0)
    assert trainable(data) == expected(10000, 850, 12)
    darts = RNNLanguageModel(DARTS_RNN, 10000, hidden_size=850, seed=0)
    assert trainable(darts) == expected(10000, 850, 8)
    assert round(trainable(darts) / 1e6) == 23


# -- the language model --------------------------------------------------------------------------

def _batch(tokens, reset=True, stream=0, seed=(1, 2)):
    tokens = tf.constant(tokens, tf.int32)
    return {"tokens": tokens, "targets": tokens, "reset": tf.constant(reset),
            "stream": tf.constant(stream), "seed": tf.constant(seed, tf.int64)}


def test_hidden_state_is_carried_between_windows_per_stream():
    """Two windows with the state carried give exactly the outputs of one window
    twice as long; another stream's state is untouched; reset starts from zero."""
    model = RNNLanguageModel(DARTS_RNN, 50, hidden_size=8, state_rows=4, seed=0)
    tokens = np.random.default_rng(0).integers(0, 50, size=(3, 12))
    whole = model.forward(_batch(tokens), training=False)["logits"]
    first = model.forward(_batch(tokens[:, :5]), training=False)["logits"]
    model.forward(_batch(tokens[:, :3], stream=2), training=False)   # another stream
    second = model.forward(_batch(tokens[:, 5:], reset=False), training=False)["logits"]
    np.testing.assert_allclose(tf.concat([first, second], 1), whole, rtol=1e-5, atol=1e-5)
    again = model.forward(_batch(tokens[:, 5:], reset=True), training=False)["logits"]
    assert not np.allclose(again, second, rtol=1e-3, atol=0.0)


def test_perplexity_matches_a_hand_computed_case():
    task = LanguageModelingTask(temporal_weight=0.0)
    # Vocabulary of 4; two rows of two tokens with known probabilities.
    probs = np.array([[[0.5, 0.25, 0.125, 0.125], [0.1, 0.2, 0.3, 0.4]],
                      [[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]]])
    targets = tf.constant([[0, 3], [2, 0]])
    outputs = {"logits": tf.constant(np.log(probs), tf.float32)}
    sums = task.eval_sums(targets, outputs)
    metrics = task.eval_metrics({k: float(v) for k, v in sums.items()}, int(task.count(targets)))
    expected = (0.5 * 0.4 * 0.25 * 0.7) ** (-1 / 4)
    assert metrics["perplexity"] == pytest.approx(expected, rel=1e-5)
    # Uniform predictions over V words have perplexity V.
    uniform = {"logits": tf.zeros([3, 7, 11])}
    sums = task.eval_sums(tf.zeros([3, 7], tf.int32), uniform)
    assert task.eval_metrics({"loss": float(sums["loss"])}, 21)["perplexity"] == \
        pytest.approx(11.0, rel=1e-5)


def test_search_model_derivation_and_child_weights():
    space = get_space("darts_rnn")
    model = RNNSearchModel(30, hidden_size=8, num_nodes=4, num_samples=3, state_rows=4, seed=1)
    for variable in model.architecture_variables:   # make node 2 prefer relu from input 1
        values = np.zeros(variable.shape, np.float32)
        if variable.shape[0] == 2:
            values[1, PRIMITIVES.index("relu")] = 8.0
        variable.assign(values)
    darts = space.derive(model, "darts", seed=0)
    assert darts.recurrent[1] == (("relu", 1),)
    assert all(len(node) == 1 for node in darts.recurrent)
    sample = space.derive(model, "sample", seed=5)
    assert sample == space.derive(model, "sample", seed=5)
    weights = space.child_weights(model, sample)
    for position, pairs in enumerate(sample.recurrent):   # each used edge averages
        assert weights[position].numpy().sum() == pytest.approx(len({s for _, s in pairs}))
    assert set(space.describe(sample)) >= {"op_counts", "identity_pairs", "pairs_per_node"}


# -- tiny runs on real text ----------------------------------------------------------------------

SEARCH_FLAGS = ["--nodes=3", "--hidden_size=16", "--batch_size=8", "--bptt=10",
                "--train_tokens=6000", "--eval_batch_size=4", "--seed=4", "--M=3"]


def _search_cmd(data_dir, model_dir, epochs=2, extra=()):
    return [sys.executable, "-m", "trainers.search_ptb", f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", f"--epochs={epochs}", *SEARCH_FLAGS, *extra]


def _latest_step(model_dir):
    state = model_dir / "checkpoints" / "checkpoint"
    if not state.exists():
        return 0
    return int(state.read_text().split('model_checkpoint_path: "ckpt-', 1)[1].split('"', 1)[0])


@pytest.fixture(scope="module")
def searched(ptb_dir, tmp_path_factory):
    """A tiny uninterrupted search (the reference of the resume test)."""
    model_dir = tmp_path_factory.mktemp("rnn_search") / "run"
    proc = subprocess.run(_search_cmd(ptb_dir, model_dir, extra=[
        "--deterministic_ops", "--checkpoint_every_steps=5"]), cwd=ROOT, env=ENV,
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return model_dir, proc.stdout


def test_a_bfloat16_policy_is_refused_by_the_language_model_trainers(ptb_dir, tmp_path):
    proc = subprocess.run(_search_cmd(ptb_dir, tmp_path / "run", extra=[
        "--dtype_policy=mixed_bfloat16"]), cwd=ROOT, env=ENV, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "search_ptb: error: --dtype_policy=mixed_bfloat16: the recurrent language models "
        "compute in float32 only; drop the flag.")
    assert not (tmp_path / "run").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.train_ptb", f"--data_dir={ptb_dir}",
         f"--genotype={tmp_path / 'never_read.json'}",   # refused before it is read
         f"--model_dir={tmp_path / 'train'}", "--dtype_policy=mixed_bfloat16"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "--dtype_policy=mixed_bfloat16: the recurrent language models compute in float32 only; "
        "drop the flag."), proc.stderr[-2000:]
    assert not (tmp_path / "train").exists()


def test_random_search_selects_the_lowest_validation_perplexity(ptb_dir, tmp_path):
    """The random baseline in the recurrent space: uniform cells trained from
    the same start for the same epochs, the one with the lowest validation
    perplexity written as genotype.json."""
    model_dir = tmp_path / "run"
    proc = subprocess.run(_search_cmd(ptb_dir, model_dir, epochs=2, extra=[
        "--method=random", "--random_candidates=2"]), cwd=ROOT, env=ENV, capture_output=True,
        text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in
               (model_dir / "candidates.jsonl").read_text().splitlines()]
    assert [r["candidate"] for r in records] == [0, 1]
    perplexities = [r["valid_perplexity"] for r in records]
    assert all(math.isfinite(p) and p > 1.0 for p in perplexities)
    assert records[0]["genotype"] != records[1]["genotype"]
    result = json.loads((model_dir / "search_result.json").read_text())
    assert result["valid_perplexities"] == perplexities
    assert result["best_valid_perplexity"] == min(perplexities)
    best = records[result["best_candidate"]]
    assert load_recurrent_genotype(model_dir / "genotype.json").to_dict() == best["genotype"]
    assert result["epochs_per_candidate"] == [1, 1]   # --epochs=2 shared out


def test_tiny_search_writes_a_valid_recurrent_genotype(searched):
    model_dir, stdout = searched
    genotype = load_recurrent_genotype(model_dir / "genotype.json")
    assert genotype.num_nodes == 3 and genotype.concat == (1, 2, 3)
    for rule in ("sample", "inclusion", "darts"):
        load_recurrent_genotype(model_dir / f"genotype_{rule}.json")
    metrics = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(math.isfinite(m["valid_perplexity"]) for m in metrics)
    assert "perplexity" in stdout
    result = json.loads((model_dir / "search_result.json").read_text())
    assert result["child_valid_perplexity_inherited_weights"] > 1.0
    probabilities = json.loads((model_dir / "arch_probabilities.json").read_text())
    assert len(probabilities["recurrent"]) == 3
    config = json.loads((model_dir / "search_config.json").read_text())
    # DARTS rnn/architect.py: Adam's default betas; EGS defaults in the identity.
    assert (config["search"]["arch_beta_1"], config["search"]["arch_beta_2"]) == (0.9, 0.999)
    assert (config["model"]["egs_gradient"], config["model"]["edge_combine"]) == ("full", "mean")


def test_killed_search_resumes_to_the_same_recurrent_genotype(searched, ptb_dir, tmp_path):
    reference, _ = searched
    steps = json.loads((reference / "search_config.json").read_text())["distribution"][
        "steps_per_epoch"]
    run = tmp_path / "killed"
    command = _search_cmd(ptb_dir, run, extra=["--deterministic_ops",
                                               "--checkpoint_every_steps=5"])
    victim = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while _latest_step(run) < 5 and time.time() < deadline and victim.poll() is None:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=300)
    assert 5 <= _latest_step(run) < 2 * steps, "the run finished before it was killed"
    resumed = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout
    assert (run / "genotype.json").read_text() == (reference / "genotype.json").read_text()
    assert (json.loads((run / "arch_probabilities.json").read_text())
            == json.loads((reference / "arch_probabilities.json").read_text()))
    for line, line_ref in zip((run / "metrics.jsonl").read_text().split("\n"),
                              (reference / "metrics.jsonl").read_text().split("\n")):
        if line:
            a, b = json.loads(line), json.loads(line_ref)
            for key in ("train_loss", "valid_loss", "arch_entropy"):
                assert a[key] == b[key], key


@pytest.mark.parametrize("trainer,corpus", [("train_ptb", "ptb_dir"), ("train_wt2", "wt2_dir")])
def test_tiny_training_learns_and_exports(trainer, corpus, searched, tmp_path, summary_tags,
                                          request):
    """Training the searched cell on real text reaches a perplexity far below the
    vocabulary size; the SavedModel and the .keras file give the model's logits.
    Both README trainers: PTB's layout, and WikiText-2's (wiki.*.tokens in a
    wikitext-2 subfolder, the text given as the parent directory)."""
    model_dir, export_dir = tmp_path / "train", tmp_path / "export"
    data_dir = request.getfixturevalue(corpus)
    proc = subprocess.run(
        [sys.executable, "-m", f"trainers.{trainer}", f"--genotype={searched[0]}",
         f"--data_dir={data_dir}", f"--model_dir={model_dir}", f"--export_dir={export_dir}",
         "--hidden_size=32", "--batch_size=8", "--bptt=10", "--train_tokens=12000",
         "--eval_batch_size=10", "--test_batch_size=10", "--epochs=2"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((model_dir / "results.json").read_text())
    config = json.loads((model_dir / "train_config.json").read_text())
    vocab = config["data"]["vocab"]
    assert config["metadata"]["dataset"] == {"train_ptb": "ptb", "train_wt2": "wt2"}[trainer]
    expected_source = os.path.join(data_dir, "wikitext-2") if trainer == "train_wt2" else data_dir
    assert config["metadata"]["data_source"] == expected_source
    assert results["test_perplexity_at_best_valid"] < vocab / 5, (results, vocab)
    metrics = [json.loads(l) for l in (model_dir / "metrics.jsonl").read_text().split("\n") if l]
    assert metrics[-1]["valid_perplexity"] < metrics[0]["valid_perplexity"] * 1.05
    # DARTS rnn/train.py: the test split is read once, from the checkpoint
    # chosen on validation, not every epoch.
    assert "valid_perplexity" in metrics[0]
    assert not any(key.startswith("test_") for m in metrics for key in m)
    best = min(metrics, key=lambda m: m["valid_perplexity"])
    assert results["selected_epoch"] == best["epoch"]
    assert results["best_valid_perplexity"] == pytest.approx(best["valid_perplexity"],
                                                             rel=1e-5)
    assert "test perplexity" in proc.stdout.splitlines()[-1]
    tags = summary_tags(model_dir / "tensorboard")
    assert tags["genotype"] == [(1, "text")] and tags["valid_perplexity"][0][0] == 1
    if shutil.which("dot"):
        assert tags["cell/recurrent"] == [(1, "images")]
    tokens = tf.constant([[1, 2, 3, 4], [5, 6, 7, 8]], tf.int32)
    model = keras.saving.load_model(model_dir / "model.keras")
    loaded = tf.saved_model.load(str(export_dir))   # (keep it alive while serving)
    served = loaded.serve(tokens)
    np.testing.assert_allclose(served, model(tokens), rtol=1e-5, atol=1e-5)
    assert served.shape == (2, 4, vocab)


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, keras
    from data_tf import load_text_corpus, make_lm_train_inputs
    from datanas.engine.strategy import build_strategy, configure_cpu_devices
    from datanas.searching.config import SearchConfig
    from datanas.searching.searcher import Searcher
    from datanas.spaces.darts_rnn.genotype import DARTS_RNN
    from datanas.spaces.darts_rnn.language_model import RNNLanguageModel, RNNSearchModel
    from datanas.tasks import LanguageModelingTask
    from datanas.training.lm_trainer import LanguageModelTrainer, LMTrainConfig
    configure_cpu_devices(2)
    tf.config.experimental.enable_op_determinism()
    corpus = load_text_corpus("ptb", sys.argv[1])
    inputs = make_lm_train_inputs(corpus, batch_size=8, eval_batch_size=4, test_batch_size=4,
                                  bptt=8, train_tokens=4000, seed=0)

    def train(strategy):
        # The final network (no batch norm): dropout masks, carried state, loss
        # scaling and variable-length windows under the strategy.
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = RNNLanguageModel(DARTS_RNN, corpus.vocab_size, hidden_size=16,
                                     state_rows=8, seed=0)
        trainer = LanguageModelTrainer(model, LMTrainConfig(epochs=1, bptt=8), 6,
                                       strategy=strategy, global_batch_size=8)
        data = strategy.distribute_datasets_from_function(lambda c: inputs.train(0, c))
        losses = [float(trainer.train(batch)["loss"]) for _, batch in zip(range(6), data)]
        valid = trainer.evaluate(strategy.distribute_datasets_from_function(inputs.validation))
        return losses + [valid["loss"]]

    def search(strategy):
        # Each global batch is the same 4 rows twice and dropout is off, so
        # per-replica batch-norm moments equal the global ones (as in the conv
        # mirrored test).
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = RNNSearchModel(corpus.vocab_size, hidden_size=16, num_nodes=3,
                                   num_samples=2, state_rows=8, seed=0, dropout=0.0,
                                   dropout_h=0.0, dropout_x=0.0, dropout_i=0.0)
        searcher = Searcher(model, SearchConfig(epochs=1, seed=1, learning_rate=20.0,
                                                learning_rate_min=20.0, momentum=0.0,
                                                grad_clip=0.25, arch_learning_rate=3e-3),
                            steps_per_epoch=4, strategy=strategy, global_batch_size=8,
                            task=LanguageModelingTask())
        rows = np.asarray(corpus.train[:4 * 41]).reshape(4, 41)

        def per_replica(context):
            copies = 3 - context.num_replicas_in_sync   # rows per element: x twice, or x
            tokens = [np.concatenate([rows[:, k * 10:k * 10 + 10]] * copies)
                      for k in range(4) for _ in range(context.num_replicas_in_sync)]
            targets = [np.concatenate([rows[:, k * 10 + 1:k * 10 + 11]] * copies)
                       for k in range(4) for _ in range(context.num_replicas_in_sync)]
            windows = [k for k in range(4) for _ in range(context.num_replicas_in_sync)]
            return tf.data.Dataset.from_tensor_slices({
                "tokens": np.stack(tokens).astype("int32"),
                "targets": np.stack(targets).astype("int32"),
                "reset": np.array([k == 0 for k in windows]),
                "stream": np.zeros(len(windows), np.int32),
                "seed": np.array([[0, k] for k in windows], np.int64)})
        data = strategy.distribute_datasets_from_function(per_replica)
        losses = [float(searcher.joint_step(batch)["loss"]) for batch in data]
        return losses, [v.numpy().tolist() for v in model.architecture_variables]

    one = (train(build_strategy("one_device")), search(build_strategy("one_device")))
    mirrored = build_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2
    two = (train(mirrored), search(mirrored))
    print("RESULT " + json.dumps({"one": one, "two": two}))
""")


def test_mirrored_two_cpu_replicas_match_one_device(ptb_dir):
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, ptb_dir], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    (train_1, (search_1, arch_1)), (train_2, (search_2, arch_2)) = result["one"], result["two"]
    np.testing.assert_allclose(train_2, train_1, rtol=1e-4)
    np.testing.assert_allclose(search_2, search_1, rtol=1e-4)
    # egs_gradient="full" moves every logit each step (undrawn bits get their
    # gradient too), and Adam divides each step by the gradient's own scale:
    # for a logit whose gradients nearly cancel, the rounding of the two
    # replicas' sum becomes a visible part of a step, and how large depends on
    # the CPU's kernels (0.4% of one 3e-3 Adam step on one host, 2.4% on
    # another).  The bound is 10% of one step; the losses above (rtol 1e-4)
    # are what a wrong replica sum changes first.
    step = 3e-3
    for a, b in zip(arch_1, arch_2):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=0, atol=0.1 * step)
    assert max(np.abs(np.array(a)).max() for a in arch_1) > 1e-4   # the logits moved
