"""Baselines in the same code: method settings, random search, trainer flags."""

import json
import os
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from datanas.spaces.darts_cnn.genotype import CONV_PRIMITIVES, load_genotype
from datanas.searching.methods import method_settings
from datanas.searching.random_search import CandidateProgram, candidate_genotypes
from datanas.spaces.darts_cnn.random_cells import sample_uniform_genotype
from datanas.spaces.darts_cnn.space import DARTS_CNN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_method_defaults():
    data = method_settings("data", num_samples=4)
    # DATA as its authors search: per-edge codes divided by their ones, every
    # op's gradient, node_sample derivation.
    assert data.network == {"weighting": "egs", "mode": "sparse", "num_samples": 4,
                            "scope": "edge", "egs_gradient": "full", "edge_combine": "mean"}
    assert data.config == {"search_mode": "joint", "unrolled": False,
                           "derivation": "node_sample", "arch_weight_decay": 0.0,
                           "initial_temperature": 5.0, "final_temperature": 1.0,
                           "egs_gradient": "full", "edge_combine": "mean"}
    gdas = method_settings("gdas", num_samples=1)
    assert gdas.network["num_samples"] == 1 and gdas.config["derivation"] == "darts"
    darts = method_settings("darts")
    assert darts.network == {"weighting": "softmax", "mode": "dense", "num_samples": 4,
                             "scope": "edge"}   # no EGS code: no egs_gradient/edge_combine
    assert darts.config == {"search_mode": "alternate", "unrolled": False, "derivation": "darts",
                            "arch_weight_decay": 1e-3, "initial_temperature": 5.0,
                            "final_temperature": 1.0}
    assert method_settings("darts", darts_order=2).config["unrolled"] is True
    # Explicit choices override the method's defaults.
    assert method_settings("data", derivation="darts", search_mode="alternate",
                           arch_weight_decay=1e-4, egs_gradient="sampled", edge_combine="sum",
                           scope="node", initial_temperature=2.0).config == {
        "search_mode": "alternate", "unrolled": False, "derivation": "darts",
        "arch_weight_decay": 1e-4, "initial_temperature": 2.0, "final_temperature": 1.0,
        "egs_gradient": "sampled", "edge_combine": "sum"}
    # The joint hybrid gdas ran before is kept by name.
    hybrid = method_settings("snas_like", num_samples=1)
    assert hybrid.config["search_mode"] == "joint"
    assert (hybrid.config["initial_temperature"], hybrid.config["final_temperature"]) == (5, 1)
    assert hybrid.network["egs_gradient"] == "sampled"


def test_each_method_keeps_its_own_logit_decay_unless_one_is_set():
    # DARTS and GDAS decay their logits by 1e-3 (their papers); DATA by 0,
    # since its smaller gradient is outweighed by that decay.  One config
    # (as the ablation runner builds) resolves per method; an explicit decay
    # holds for every method.
    from datanas.searching.config import SearchConfig  # pylint: disable=import-outside-toplevel
    from datanas.searching.runs import resolve_method  # pylint: disable=import-outside-toplevel
    from datanas.spaces.darts_cnn.space import SupernetShape  # pylint: disable=import-outside-toplevel

    config = SearchConfig(epochs=2)
    assert config.arch_weight_decay is None
    decays = {}
    for method, samples in (("data", 4), ("gdas", 1), ("darts", 4), ("random", 4)):
        shape = SupernetShape(num_cells=3, init_channels=4, num_samples=samples)
        extra = {"random_candidates": 2} if method == "random" else {}   # an epoch each
        decays[method] = resolve_method(method, config, shape, **extra)[1].arch_weight_decay
        explicit = SearchConfig(epochs=2, arch_weight_decay=5e-4)
        assert resolve_method(method, explicit, shape, **extra)[1].arch_weight_decay == 5e-4
    assert decays == {"data": 0.0, "gdas": 1e-3, "darts": 1e-3, "random": 0.0}
    with pytest.raises(ValueError, match="arch_weight_decay must be a number >= 0"):
        SearchConfig(arch_weight_decay=-1e-3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="enas"), "'enas'"),
    (dict(method="gdas", num_samples=4), "M=4"),
    (dict(method="data", darts_order=2), "darts_order=2"),
    (dict(method="darts", darts_order=3), "darts_order"),
    (dict(method="darts", darts_order=2, search_mode="joint"), "alternate"),
    (dict(method="darts", scope="node"), "one distribution per edge"),
    (dict(method="gdas", num_samples=1, scope="node"), "one distribution per edge"),
    (dict(method="data", scope="cell"), "'cell'"),
    (dict(method="snas_like", num_samples=4), "M=4"),
    (dict(method="data", egs_gradient="all"), "egs_gradient must be one of full, sampled; "
                                              "got 'all'"),
    (dict(method="data", edge_combine="max"), "edge_combine must be one of mean, sum; got"),
    (dict(method="gdas", num_samples=1, egs_gradient="full"), "only the selected op"),
    (dict(method="darts", edge_combine="sum"), "method 'darts' samples none"),
    (dict(method="random"), "random_search"),
])
def test_method_conflicts_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        method_settings(**kwargs)


def test_uniform_genotypes_cover_the_space_uniformly():
    rng = np.random.default_rng(0)
    ops, sources = Counter(), Counter()
    draws = 2000
    for _ in range(draws):
        genotype = sample_uniform_genotype(rng, 4, CONV_PRIMITIVES)
        for node, pairs in enumerate(genotype.normal):
            assert len(pairs) == 2 and len({s for _, s in pairs}) == 2
            ops.update(op for op, _ in pairs)
            if node == 3:   # node 5 chooses 2 of its 5 inputs
                sources.update(s for _, s in pairs)
    assert "none" not in ops
    # 7 ops, 16000 draws: each frequency 1/7 with std ~0.0028; allow 4 std.
    frequencies = np.array([ops[o] for o in CONV_PRIMITIVES if o != "none"]) / sum(ops.values())
    np.testing.assert_allclose(frequencies, 1 / 7, atol=0.012)
    # Each of the 5 inputs of the last node is taken with probability 2/5.
    np.testing.assert_allclose(np.array([sources[s] for s in range(5)]) / draws, 0.4, atol=0.045)


def test_baselines_keep_one_distribution_per_edge():
    # DARTS (Eq. 2) and SNAS/GDAS: a softmax / one-hot sample over each edge's
    # ops; DATA searches per edge by default (its authors') and may use nodes.
    for method, samples in (("darts", 4), ("gdas", 1)):
        assert method_settings(method, num_samples=samples).network["scope"] == "edge"
        assert method_settings(method, num_samples=samples, scope="edge").network["scope"] == \
            "edge"
    assert method_settings("data", scope="edge").network["scope"] == "edge"
    assert method_settings("data").network["scope"] == "edge"
    assert method_settings("data", scope="node").network["scope"] == "node"


def test_candidates_are_a_function_of_the_seed():
    supernet = SimpleNamespace(num_nodes=3, primitives=CONV_PRIMITIVES)
    a = candidate_genotypes(DARTS_CNN, supernet, 5, seed=1)
    assert a == candidate_genotypes(DARTS_CNN, supernet, 5, seed=1)
    assert a != candidate_genotypes(DARTS_CNN, supernet, 5, seed=2)
    assert len(set(g.to_json() for g in a)) == 5
    with pytest.raises(ValueError, match="positive integer"):
        candidate_genotypes(DARTS_CNN, supernet, 0, seed=1)


def test_random_search_trains_candidates_from_the_same_start_and_resumes(tmp_path, capsys,
                                                                         global_seed):
    pytest.importorskip("sklearn")
    from data_tf.image_datasets import load_image_dataset
    from data_tf.search_inputs import make_search_inputs
    from datanas.searching.config import SearchConfig
    from datanas.searching.runs import build_search, run_method_search
    from datanas.spaces.darts_cnn.space import SupernetShape

    global_seed(0)   # the supernet's initial weights
    dataset = load_image_dataset("digits")
    inputs = make_search_inputs(dataset, batch_size=32, train_size=400, seed=0)
    shape = SupernetShape(num_cells=3, init_channels=4, num_nodes=2,
                          primitives=("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"))
    model, config = build_search("random", dataset.num_classes, dataset.image_shape,
                                 SearchConfig(epochs=6, seed=0), shape, random_candidates=3)
    assert config.epochs == 6   # the search's budget, shared out over the 3 candidates
    from datanas.spaces.darts_cnn.derivation import genotype_to_weights
    from datanas.searching.searcher import Searcher
    searcher = Searcher(model, config, inputs.steps_per_epoch)
    state = searcher.snapshot_state()   # the initial weights every candidate starts from
    result = run_method_search("random", model, inputs, config, str(tmp_path),
                               random_candidates=3, verbose=0)
    records = [json.loads(l) for l in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert [r["candidate"] for r in records] == [0, 1, 2]
    best = max(records, key=lambda r: r["valid_accuracy"])
    assert result.final["best_candidate"] == best["candidate"]
    assert load_genotype(tmp_path / "genotype.json").to_dict() == best["genotype"]

    # Every candidate learned: its training accuracy over the last epoch is
    # above its own untrained accuracy on the same batches (the same
    # training-mode forward, no update) by a margin.  Measured over seeds 0-5
    # (global and search seed): untrained 0.065-0.119 (18 candidates);
    # trained-minus-untrained 0.11-0.29 (seeds 0-2, 9 candidates).  0.05 is
    # ~2.4 standard errors of an accuracy over these 352 examples and half
    # the smallest gain seen.
    def untrained_accuracy(weights):
        searcher.restore_fresh_state(state)
        program = CandidateProgram(searcher, inputs, weights, None)
        right = total = 0
        for images, labels in program.batches(0, 0):
            predicted = np.argmax(model.forward(images, weights, training=True), axis=-1)
            right += int(np.sum(predicted == labels.numpy()))
            total += len(predicted)
        return right / total

    for r in records:
        weights = DARTS_CNN.child_weights(model, DARTS_CNN.genotype_from_dict(r["genotype"]))
        untrained = untrained_accuracy(weights)
        assert r["train_accuracy"] > untrained + 0.05, (r["candidate"], r["train_accuracy"],
                                                        untrained)

    # Retraining a finished candidate from the fresh state reproduces it exactly.
    weights = genotype_to_weights(result.genotype, model.primitives, model.num_nodes)
    runs = []
    for _ in range(2):
        searcher.restore_fresh_state(state)
        program = CandidateProgram(searcher, inputs, weights, None)
        runs.append([{k: float(v) for k, v in program.train_step(batch).items()}
                     for batch in program.batches(0, 0)])
    assert runs[0] == runs[1] and len(runs[0]) == inputs.steps_per_epoch

    # Rerunning the same command reads the finished candidates back.
    capsys.readouterr()
    again = run_method_search("random", model, inputs, config, str(tmp_path),
                              random_candidates=3, verbose=1)
    out = capsys.readouterr().out
    assert "3 of 3 candidates done" in out and "Candidate 1/3" not in out
    assert again.final["best_candidate"] == result.final["best_candidate"]


def test_random_search_costs_the_search_s_epochs(tmp_path, global_seed):
    """Random search at equal cost: the search's weight-training epochs in
    all, the remainder one epoch each to the first candidates (not rounded
    down to an equal share), each candidate's learning rate decaying over
    its own epochs."""
    pytest.importorskip("sklearn")
    from data_tf.image_datasets import load_image_dataset
    from data_tf.search_inputs import make_search_inputs
    from datanas.searching.config import SearchConfig
    from datanas.spaces.darts_cnn.space import SupernetShape
    from datanas.searching.runs import (build_search, random_epochs_per_candidate,
                                     resolve_method, run_method_search)

    assert random_epochs_per_candidate(20, 8) == [3, 3, 3, 3, 2, 2, 2, 2]
    assert random_epochs_per_candidate(6, 3) == [2, 2, 2]
    with pytest.raises(ValueError, match="shares 2 epoch.s. of weight training over 4 "
                                         "candidates: each needs at least one"):
        random_epochs_per_candidate(2, 4)
    shape = SupernetShape(num_cells=3, init_channels=4, num_nodes=1,
                          primitives=("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"))
    # --random_epochs: that many each, so that many times the candidates in all.
    assert resolve_method("random", SearchConfig(epochs=50), shape, random_candidates=3,
                          random_epochs=2)[1].epochs == 6
    global_seed(0)
    dataset = load_image_dataset("digits")
    inputs = make_search_inputs(dataset, batch_size=32, train_size=200, seed=0)
    model, config = build_search("random", dataset.num_classes, dataset.image_shape,
                                 SearchConfig(epochs=3, seed=0), shape, random_candidates=2)
    result = run_method_search("random", model, inputs, config, str(tmp_path),
                               random_candidates=2, verbose=0)
    assert result.final["epochs_per_candidate"] == [2, 1] and result.final["epochs"] == 3
    assert result.final["steps"] == 3 * inputs.steps_per_epoch
    records = [json.loads(l) for l in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert [r["epochs"] for r in records] == [2, 1]
    for index, epochs in enumerate((2, 1)):
        lines = (tmp_path / "candidates" / str(index) / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == epochs
    saved = json.loads((tmp_path / "search_config.json").read_text())
    assert saved["search"]["epochs_per_candidate"] == [2, 1]


def _trainer(tmp_path, *args, timeout=900):
    cmd = [sys.executable, "-m", "trainers.search_cifar", "--dataset=digits",
           f"--model_dir={tmp_path / 'run'}", "--layers=3", "--nodes=1", "--init_channels=4",
           "--train_size=300", "--batch_size=32", "--epochs=1",
           "--primitives=none,max_pool_3x3,skip_connect,sep_conv_3x3", *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_search_trainer_rejects_conflicting_method_flags(tmp_path):
    proc = _trainer(tmp_path, "--method=gdas", "--M=4")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "gdas" in proc.stderr and "M=4" in proc.stderr
    proc = _trainer(tmp_path, "--method=darts", "--darts_order=2", "--search_mode=joint")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "alternate" in proc.stderr
    proc = _trainer(tmp_path, "--method=darts", "--egs_scope=node")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "one distribution per edge" in proc.stderr
    proc = _trainer(tmp_path, "--method=darts", "--egs_gradient=full")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--egs_gradient=full" in proc.stderr and "'darts'" in proc.stderr
    assert not (tmp_path / "run").exists()   # refused before anything is written
    proc = _trainer(tmp_path, "--primitives=none,conv_9x9")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "conv_9x9" in proc.stderr and "sep_conv_3x3" in proc.stderr


# Second-order steps are checked in-process (tests/test_darts_unrolled.py);
# their trainer run is left out to keep the suite short (its graph takes ~80 s).
@pytest.mark.parametrize("method_args, expected", [
    (("--method=darts",), {"search_mode": "alternate", "unrolled": False,
                           "derivation": "darts"}),
    (("--method=gdas",), {"search_mode": "alternate", "unrolled": False, "derivation": "darts",
                          "initial_temperature": 10.0, "final_temperature": 0.1,
                          "egs_gradient": "sampled"}),
])
def test_search_trainer_runs_baselines(tmp_path, method_args, expected):
    pytest.importorskip("sklearn")
    proc = _trainer(tmp_path, *method_args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    saved = json.loads((run / "search_config.json").read_text())
    assert {k: saved["search"][k] for k in expected} == expected
    assert saved["model"]["egs_scope"] == "edge"   # one distribution per edge, as in the paper
    assert saved["metadata"]["method"] == method_args[0].split("=")[1]
    final = json.loads((run / "search_result.json").read_text())
    assert final["derivation"] == "darts"
    # DARTS derivation: two inputs per node (node 2 has exactly two candidates).
    assert all(len(pairs) == 2 for pairs in load_genotype(run).reduce)


def test_runs_before_egs_gradient_and_edge_combine_count_as_sampled_and_sum():
    """An identity written before the two settings existed is read as what
    those runs did (undrawn ops skipped, selected ops added), in a trainer's
    identity and in the ablation runner's alike."""
    from datanas.engine.run_identity import identity_differences  # pylint: disable=import-outside-toplevel

    old = {"settings": {"method": "data"}, "search": {"epochs": 2}}
    as_before = {"settings": {"method": "data", "egs_gradient": "sampled",
                              "edge_combine": "sum"},
                 "search": {"epochs": 2, "egs_gradient": "sampled", "edge_combine": "sum"}}
    assert identity_differences(old, as_before) == []
    now = {"settings": {"method": "data", "egs_gradient": None, "edge_combine": None},
           "search": {"epochs": 2, "egs_gradient": "full", "edge_combine": "mean"}}
    assert identity_differences(old, now) == [
        ("search.edge_combine", "sum", "mean"), ("search.egs_gradient", "sampled", "full"),
        ("settings.edge_combine", "sum", None), ("settings.egs_gradient", "sampled", None)]
