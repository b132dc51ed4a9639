"""The architecture-gradient diagnostics (datanas.analysis.arch_signal)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from datanas.analysis.arch_signal import (Estimator, architecture_gradients,
                                          gradient_statistics, measure_during_warmup)
from datanas.analysis.seed_agreement import seed_agreement
from datanas.searching.config import SearchConfig
from datanas.searching.searcher import Searcher
from datanas.spaces.darts_cnn.supernet import SearchNetwork
from datanas.tasks import ClassificationTask

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_statistics_recover_a_known_signal_to_noise_ratio():
    """Gradients = a fixed mean (norm 1) + per-batch noise + per-draw noise
    with known variances: the estimates match them within sampling error."""
    rng = np.random.default_rng(0)
    batches, draws, size = 40, 25, 50
    mean = np.zeros(size)
    mean[0] = 1.0
    batch_noise = rng.normal(0, 2.0 / np.sqrt(size), (batches, 1, size))   # variance 4
    draw_noise = rng.normal(0, 3.0 / np.sqrt(size), (batches, draws, size))  # variance 9
    stats, estimate = gradient_statistics(mean + batch_noise + draw_noise)
    assert stats["noise_norm"] == pytest.approx(np.sqrt(13.0), rel=0.05)
    assert stats["signal_norm"] == pytest.approx(1.0, abs=0.1)
    assert stats["snr"] == pytest.approx(1.0 / np.sqrt(13.0), rel=0.15)
    assert stats["sampling_share"] == pytest.approx(9.0 / 13.0, abs=0.05)
    assert stats["samples"] == batches * draws
    assert estimate[0] == pytest.approx(1.0, abs=0.1)


def test_the_sampling_share_is_a_fraction_even_when_batches_agree():
    """Draw noise only, few batches: the raw within/total ratio of two
    unbiased variances exceeds 1 about half the time; the share never does."""
    rng = np.random.default_rng(3)
    shares = [gradient_statistics(rng.normal(size=(3, 4, 20)))[0]["sampling_share"]
              for _ in range(200)]
    assert all(0.0 <= share <= 1.0 for share in shares)
    assert np.mean(shares) > 0.9
    # No draw noise at all: nothing comes from sampling.
    batch_only = np.repeat(rng.normal(size=(5, 1, 20)), 4, axis=1)
    assert gradient_statistics(batch_only)[0]["sampling_share"] == 0.0


def test_pure_noise_has_no_signal():
    """Zero-mean gradients: the bias-corrected signal is about zero, not the
    |mean| of the sample (which is ~noise/sqrt(n))."""
    grads = np.random.default_rng(1).normal(size=(30, 10, 40))
    stats, _ = gradient_statistics(grads)
    assert stats["signal_norm"] < 0.05 * stats["noise_norm"]
    assert stats["steps_to_signal"] > 100


def test_gradients_of_each_estimator_on_a_tiny_supernet():
    """EGS draws differ (a sampled child each), DARTS' softmax gradient is
    deterministic per batch, and every logit gets a gradient from softmax
    mixing; moving batch-norm statistics are restored."""
    model = SearchNetwork(10, init_channels=4, num_cells=3, num_nodes=2, num_samples=2, seed=0,
                          primitives=("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"))
    model.build((None, 8, 8, 1))
    images = tf.random.stateless_normal([8, 8, 8, 1], seed=[1, 2])
    labels = tf.constant([0, 1, 2, 3, 4, 5, 6, 7])
    statistics = [v.numpy().copy() for v in model.non_trainable_variables]
    task = ClassificationTask(10)
    egs = architecture_gradients(model, task, [(images, labels)],
                                 Estimator("M2", "egs", 2, 1.0, "node"), draws=3)
    dense = architecture_gradients(model, task, [(images, labels)],
                                   Estimator("darts", "softmax", scope="edge"), draws=3)
    logits = sum(int(np.prod(v.shape)) for v in model.architecture_variables)
    assert egs.shape == (1, 3, logits) and dense.shape == (1, 1, logits)
    assert not np.allclose(egs[0, 0], egs[0, 1])
    assert np.count_nonzero(dense) == logits
    for before, variable in zip(statistics, model.non_trainable_variables):
        np.testing.assert_array_equal(before, variable.numpy())


def test_measurement_during_weight_warmup_trains_only_the_weights():
    """measure_during_warmup: rows per (warm-up point, estimator); weight
    steps run in between, the logits stay where they were."""
    model = SearchNetwork(10, init_channels=4, num_cells=3, num_nodes=2, num_samples=2, seed=0,
                          primitives=("none", "skip_connect", "sep_conv_3x3"))
    model.build((None, 8, 8, 1))
    searcher = Searcher(model, SearchConfig(epochs=1, seed=0, execution="host"),
                        steps_per_epoch=2, global_batch_size=8)
    images = tf.random.stateless_normal([8, 8, 8, 1], seed=[3, 4])
    labels = tf.range(8) % 10
    logits = [v.numpy().copy() for v in model.architecture_variables]
    weights = [v.numpy().copy() for v in model.network_variables]
    lines = []
    rows = measure_during_warmup(
        searcher, ClassificationTask(10), lambda epoch: [(images, labels)] * 2,
        [(images, labels)] * 2, [Estimator("darts", "softmax", scope="edge"),
                                 Estimator("M2", "egs", 2, 1.0, "node")],
        warmup_steps=[0, 3], draws=2, log=lines.append)
    assert [(r["warmup_steps"], r["estimator"]) for r in rows] == [
        (0, "darts"), (0, "M2"), (3, "darts"), (3, "M2")]
    assert int(searcher.step.numpy()) == 3
    assert rows[0]["cosine_to_dense"] == pytest.approx(1.0)
    assert rows[0]["sampling_share"] == 0.0     # softmax mixing samples nothing
    assert rows[2]["train_loss"] != rows[0]["train_loss"]
    assert len(lines) == 4 and "SNR" in lines[0]
    for before, variable in zip(logits, model.architecture_variables):
        np.testing.assert_array_equal(before, variable.numpy())
    assert any(not np.array_equal(before, variable.numpy())
               for before, variable in zip(weights, model.network_variables))


def _write_probabilities(path, normal, reduce):
    path.write_text(json.dumps({
        "scope": "node", "num_samples": 4, "primitives": ["a", "b"],
        "normal": [{"node": i + 2, "p": p.tolist()} for i, p in enumerate(normal)],
        "reduce": [{"node": i + 2, "p": p.tolist()} for i, p in enumerate(reduce)]}))
    return str(path)


def test_seed_agreement_tells_signal_from_noise(tmp_path):
    """Runs that learned the same preference (plus their own noise) correlate;
    runs that learned independent noise do not; the entropy drop is measured
    against the uniform distribution of each node."""
    rng = np.random.default_rng(0)
    shapes = [(2, 8), (3, 8), (4, 8), (5, 8)]
    preference = [rng.normal(size=s) for s in shapes]

    def probs(logits):
        return [np.exp(l) / np.exp(l).sum() for l in logits]

    def run(name, signal):
        normal = probs([signal * p + rng.normal(size=p.shape) for p in preference])
        reduce = probs([signal * p + rng.normal(size=p.shape) for p in preference])
        return _write_probabilities(tmp_path / f"{name}.json", normal, reduce)

    learned = seed_agreement([run(f"s{i}", 2.0) for i in range(3)])
    walked = seed_agreement([run(f"w{i}", 0.0) for i in range(3)])
    assert learned["mean_pearson"] > 0.5 and len(learned["pearson"]) == 3
    assert abs(walked["mean_pearson"]) < 0.2
    uniform = probs([np.zeros(s) for s in shapes])
    flat = seed_agreement([_write_probabilities(tmp_path / "u0.json", uniform, uniform),
                           _write_probabilities(tmp_path / "u1.json", uniform, uniform)])
    entropy = flat["entropy"][str(tmp_path / "u0.json")]
    assert entropy["relative_drop"] == pytest.approx(0.0, abs=1e-9)
    assert entropy["uniform"] == pytest.approx(np.mean([np.log(16), np.log(24), np.log(32),
                                                        np.log(40)]))
    assert learned["entropy"][str(tmp_path / "s0.json")]["relative_drop"] > 0.1
    with pytest.raises(ValueError, match="another cell shape"):
        seed_agreement([run("x", 1.0), _write_probabilities(tmp_path / "y.json",
                                                           uniform[:2], uniform[:2])])


@pytest.mark.parametrize("flag, message", [
    ("--estimators=M0", "'M0' is neither"), ("--estimators=darts,K4", "'K4' is neither"),
    ("--warmup_steps=100,50", "--warmup_steps must increase")])
def test_arch_signal_command_refuses_bad_settings_in_one_line(tmp_path, flag, message):
    proc = subprocess.run([sys.executable, "-m", "trainers.arch_signal", flag,
                           f"--model_dir={tmp_path / 'out'}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
