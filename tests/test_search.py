"""Search steps, temperature schedule and a tiny real-data search."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_tf.image_datasets import load_image_dataset
from data_tf.search_inputs import make_search_inputs
from datanas.spaces.darts_cnn.genotype import load_genotype
from datanas.searching.config import SearchConfig, temperature_at
from datanas.searching.run import run_search
from datanas.searching.searcher import Searcher
from datanas.tasks import ClassificationTask, LanguageModelingTask, SegmentationTask
from datanas.spaces.darts_cnn.supernet import SearchNetwork

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def tiny_model(num_classes=10, shape=(8, 8, 1), **overrides):
    # A reduced op set keeps graph-building time of these unit tests low; the
    # end-to-end trainer test below uses the full op set.
    kwargs = dict(init_channels=4, num_cells=3, num_nodes=2, num_samples=3, seed=0,
                  primitives=("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"))
    kwargs.update(overrides)
    model = SearchNetwork(num_classes, **kwargs)
    model.build((None,) + shape)
    return model


def test_temperature_schedule_is_linear():
    config = SearchConfig(epochs=5, initial_temperature=5.0, final_temperature=1.0)
    assert [temperature_at(config, e) for e in range(5)] == [5.0, 4.0, 3.0, 2.0, 1.0]
    assert temperature_at(SearchConfig(epochs=1), 0) == 1.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(epochs=0), "epochs"), (dict(search_mode="bilevel"), "'bilevel'"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(momentum=1.5), "momentum"), (dict(learning_rate_min=1.0), "learning_rate_min"),
    (dict(epochs=3, arch_warmup_epochs=3), r"arch_warmup_epochs must be .* \[0, epochs=3\)"),
    (dict(arch_warmup_epochs=-1), "arch_warmup_epochs"),
])
def test_bad_search_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**kwargs)


def test_arch_warmup_epochs_keep_the_logits_still_then_train_them(tmp_path):
    """Warm-up epochs run the same steps with an architecture learning rate
    of 0: the logits (and so the selection entropy) stay exactly at their
    initial values, then move."""
    pytest.importorskip("sklearn")
    from datanas.searching.config import arch_learning_rate_at
    from datanas.spaces import get_space
    config = SearchConfig(epochs=2, seed=0, arch_warmup_epochs=1, arch_learning_rate=1e-2)
    assert [arch_learning_rate_at(config, e) for e in range(2)] == [0.0, 1e-2]
    inputs = make_search_inputs(load_image_dataset("digits"), batch_size=32, train_size=200,
                                seed=0)
    model = tiny_model()
    initial = [v.numpy().copy() for v in model.architecture_variables]
    entropy = get_space("darts_cnn").selection_entropy(model)
    run_search(model, inputs, config, str(tmp_path), verbose=0)
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [h["arch_learning_rate"] for h in history] == pytest.approx([0.0, 1e-2])
    assert history[0]["arch_entropy"] == entropy
    assert history[1]["arch_entropy"] != entropy
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(initial, model.architecture_variables))


@pytest.mark.parametrize("scope", ["node", "edge"])
def test_selection_entropy_is_that_of_each_distribution(scope):
    """Uniform logits: a node-scope distribution over its (inputs x 4 ops)
    pairs has entropy log(inputs * 4); an edge-scope one log(4) per edge."""
    from datanas.spaces import get_space
    model = tiny_model(egs_scope=scope)
    for variable in model.architecture_variables:
        variable.assign(tf.zeros_like(variable))
    expected = np.mean([np.log(8), np.log(12)]) if scope == "node" else np.log(4)
    assert get_space("darts_cnn").selection_entropy(model) == pytest.approx(expected)


def test_derivation_rules_are_the_space_s():
    from datanas.spaces import get_space
    space = get_space("darts_cnn")
    with pytest.raises(ValueError, match="'top2'.*|.*sample, inclusion, darts"):
        space.canonical_rule("top2")
    assert space.canonical_rule("most_likely") == "inclusion"   # the rule's old name


def test_joint_step_updates_both_variable_sets_and_is_reproducible(global_seed):
    images = tf.random.stateless_normal([8, 8, 8, 1], seed=[1, 2])
    labels = tf.constant([0, 1, 2, 3, 4, 5, 6, 7])

    def run():
        global_seed(4)
        model = tiny_model()
        searcher = Searcher(model, SearchConfig(epochs=1, seed=4), steps_per_epoch=3)
        arch0 = [v.numpy().copy() for v in model.architecture_variables]
        net0 = [v.numpy().copy() for v in model.network_variables]
        losses = [float(searcher.joint_step((images, labels))["loss"]) for _ in range(3)]
        arch_changed = [not np.allclose(a, v.numpy()) for a, v in
                        zip(arch0, model.architecture_variables)]
        net_changed = sum(not np.allclose(a, v.numpy()) for a, v in zip(net0, model.network_variables))
        return losses, arch_changed, net_changed, [v.numpy() for v in model.architecture_variables]

    losses, arch_changed, net_changed, arch = run()
    assert all(np.isfinite(losses))
    assert all(arch_changed), "every node's architecture logits must be updated"
    assert net_changed > 0
    losses2, _, _, arch2 = run()
    np.testing.assert_allclose(losses, losses2, rtol=1e-5)
    for a, b in zip(arch, arch2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_alternate_mode_arch_step_touches_only_logits():
    model = tiny_model()
    searcher = Searcher(model, SearchConfig(epochs=1, search_mode="alternate"), steps_per_epoch=2)
    images = tf.random.stateless_normal([4, 8, 8, 1], seed=[3, 4])
    labels = tf.constant([1, 2, 3, 4])
    net0 = [v.numpy().copy() for v in model.network_variables]
    arch0 = [v.numpy().copy() for v in model.architecture_variables]
    searcher.arch_step((images, labels))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(net0, model.network_variables))
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(arch0, model.architecture_variables))
    searcher.weight_step((images, labels))
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(net0, model.network_variables))
    assert int(searcher.step.numpy()) == 1


def test_run_search_on_digits_writes_artifacts(tmp_path):
    pytest.importorskip("sklearn")
    dataset = load_image_dataset("digits")
    inputs = make_search_inputs(dataset, batch_size=32, train_size=400, seed=0)
    model = tiny_model()
    result = run_search(model, inputs, SearchConfig(epochs=2, seed=0), str(tmp_path), verbose=0)
    for name in ("search_config.json", "metrics.jsonl", "genotype.json", "genotype_darts.json",
                 "genotype_inclusion.json", "genotype_sample.json", "arch_probabilities.json",
                 "search_result.json"):
        assert (tmp_path / name).exists(), name
    assert load_genotype(tmp_path / "genotype.json") == result.genotype
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["temperature"] == 5.0 and history[1]["temperature"] == 1.0
    assert os.listdir(tmp_path / "tensorboard")
    # What a user watches (datanas.searching.epoch_pictures; drawings in tests/test_visualize.py).
    images = {}
    for path in (tmp_path / "tensorboard").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    images.setdefault(value.tag, []).append(event.step)
    expected = ["arch_probabilities/normal", "arch_probabilities/reduce"]
    if shutil.which("dot"):   # Graphviz, installed by setup.sh
        expected += ["cell/normal", "cell/reduce"]
    assert images == {tag: [1, 2] for tag in expected}
    assert all(0.0 < h["expected_ops_per_edge/normal"] < 3.0 for h in history)
    assert [h["arch_learning_rate"] for h in history] == pytest.approx([3e-4, 3e-4])
    assert sorted(p.name for p in tmp_path.glob("cell_epoch_*.json")) == [
        "cell_epoch_001.json", "cell_epoch_002.json"]
    last = json.loads((tmp_path / "cell_epoch_002.json").read_text())   # same rule, same logits
    assert last["epoch"] == 2 and last["genotype"] == result.genotype.to_dict()
    final = json.loads((tmp_path / "search_result.json").read_text())
    assert 0.0 <= final["child_valid_accuracy_inherited_weights"] <= 1.0
    assert final["steps"] == 2 * inputs.steps_per_epoch
    # Resuming into this directory with other settings is refused, naming the difference.
    with pytest.raises(ValueError, match="arch_learning_rate: checkpoint 0.0003, now 0.01"):
        run_search(model, inputs, SearchConfig(epochs=2, seed=0, arch_learning_rate=1e-2),
                   str(tmp_path), verbose=0)


@pytest.mark.parametrize("damaged, why", [
    ('{"search": {"epochs": 2, "se', "not complete JSON: Unterminated string"),
    ("[]", "a JSON list, not the object a search writes")])
def test_a_damaged_search_config_is_one_line_naming_it(tmp_path, damaged, why):
    """A resumed search reads its search_config.json: a damaged one
    (truncated, or not an object) stops the trainer in one line naming it,
    and the file is left as it was."""
    pytest.importorskip("sklearn")
    from flags import core as flags_core  # pylint: disable=import-outside-toplevel

    inputs = make_search_inputs(load_image_dataset("digits"), batch_size=32, train_size=64,
                                seed=0)
    (tmp_path / "checkpoints").mkdir()
    path = tmp_path / "search_config.json"
    path.write_text(damaged)
    with pytest.raises(SystemExit) as stop:
        with flags_core.run_errors("search_cifar"):
            run_search(tiny_model(), inputs, SearchConfig(epochs=1, seed=0), str(tmp_path),
                       verbose=0)
    message = stop.value.code
    assert isinstance(message, str) and "\n" not in message, message
    assert message.startswith(f"search_cifar: error: {path} is damaged ({why}"), message
    assert message.endswith("nothing was changed."), message
    assert path.read_text() == damaged


def test_a_checkpoint_of_another_search_is_refused_naming_each_difference(tmp_path):
    """search_config.json is compared as a run identity: a changed setting
    (of the search or of the supernet, its head included) is refused naming
    it, while runtime state and the budget may change on resume."""
    from datanas.searching.run import check_same_search  # pylint: disable=import-outside-toplevel
    model, config = tiny_model(), SearchConfig(epochs=1, seed=0, learning_rate=0.025)
    (tmp_path / "search_config.json").write_text(json.dumps(
        {"search": dataclasses.asdict(config), "model": model.get_config()}))
    check_same_search(str(tmp_path), model, dataclasses.replace(config, epochs=3))
    with pytest.raises(ValueError) as refused:
        check_same_search(str(tmp_path), tiny_model(num_classes=7),
                          dataclasses.replace(config, learning_rate=0.05))
    message = str(refused.value)
    assert "holds a checkpoint of a different search" in message
    assert "learning_rate: checkpoint 0.025, now 0.05" in message
    assert "head.config.num_classes: checkpoint 10, now 7" in message
    assert "epochs" not in message and "temperature" not in message


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="Debian dataset-fashion-mnist not installed")
def test_search_trainer_end_to_end_on_fashion_mnist(tmp_path):
    """The README's command, scaled down: a real search on real data."""
    model_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "trainers.search_cifar", "--dataset=fashion_mnist",
           f"--model_dir={model_dir}", "--layers=3", "--nodes=2", "--init_channels=4",
           "--train_size=3000", "--batch_size=32", "--epochs=2", "--M=4", "--seed=1"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "valid_accuracy" in proc.stdout
    genotype = load_genotype(model_dir / "genotype.json")
    assert len(genotype.normal) == 2
    flags = json.loads((model_dir / "flags.json").read_text())
    assert flags["M"] == 4 and flags["dataset"] == "fashion_mnist"
    history = [json.loads(l) for l in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2
    # Real learning on real data (10 classes, chance = 0.1): the sampled children
    # improve on the training split (epoch-2 mean over ~2700 images, so 0.2 is far
    # beyond chance; runs here reach ~0.3) and beat chance on the held-out split
    # (300 images: 0.15 is about 3 standard errors above chance; inference-mode BN
    # statistics of rarely sampled ops lag, so validation trails training early).
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"]
    assert history[-1]["train_accuracy"] > 0.2
    assert history[-1]["valid_accuracy"] > 0.15


def test_search_trainer_reports_missing_dataset_clearly(tmp_path):
    cmd = [sys.executable, "-m", "trainers.search_cifar", "--dataset=cifar10",
           f"--data_dir={tmp_path / 'nowhere'}", f"--model_dir={tmp_path / 'run'}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TFDS_DATA_DIR=str(tmp_path / "tfds"))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "cifar10" in proc.stderr and "nowhere" in proc.stderr


def test_evaluating_an_empty_split_is_an_error_not_a_score():
    """Zero examples would give loss 0 and accuracy 0 as if measured."""
    model = tiny_model()
    searcher = Searcher(model, SearchConfig(epochs=1), steps_per_epoch=1)
    images = tf.random.stateless_normal([4, 8, 8, 1], seed=[1, 2])
    empty = tf.data.Dataset.from_tensors((images, tf.zeros([4], tf.int32))).take(0)
    with pytest.raises(ValueError, match=r"^evaluation: the split yielded no examples"):
        searcher.evaluate(empty)
    one = tf.data.Dataset.from_tensors((images, tf.constant([0, 1, 2, 3])))
    metrics = searcher.evaluate(one)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["loss"] > 0.0


@pytest.mark.parametrize("task", [
    ClassificationTask(10), LanguageModelingTask(),
    SegmentationTask(num_classes=3, ignore_label=255, class_names=("a", "b", "c"))],
    ids=["classification", "language_modeling", "segmentation"])
def test_every_task_refuses_metrics_of_an_empty_split(task):
    """The searcher and both trainers read a split's metrics through
    Task.split_metrics, so none of them reports a score of nothing."""
    shapes = task.eval_shapes
    sums = {k: np.zeros(shapes[k]) if shapes[k] else 0.0 for k in task.eval_names}
    with pytest.raises(ValueError, match=r"^evaluation: the split yielded no examples"):
        task.split_metrics(sums, 0)
    assert set(task.split_metrics(sums, 4)) >= {"loss"}


def test_batch_norm_recalibration_moves_only_statistics_to_the_child():
    model = tiny_model()
    searcher = Searcher(model, SearchConfig(epochs=1), steps_per_epoch=1)
    images = tf.random.stateless_normal([16, 8, 8, 1], seed=[5, 6]) * 3.0 + 2.0
    child = model.edge_weights(stochastic=True, seed=tf.constant([1, 2], tf.int64))
    trainable = [v.numpy().copy() for v in model.trainable_variables]
    dataset = tf.data.Dataset.from_tensors((images, tf.zeros([16], tf.int32))).repeat(60)
    searcher.recalibrate_batch_norm(dataset, child, batches=50)
    for before, variable in zip(trainable, model.trainable_variables):
        np.testing.assert_array_equal(before, variable.numpy())
    # Momentum 0.9: after 50 identical batches the moving mean is the batch
    # mean up to 0.9**50 (0.5%) of its initial value.
    batch_mean = tf.reduce_mean(model.stem.conv(images), axis=[0, 1, 2]).numpy()
    np.testing.assert_allclose(model.stem.bn.moving_mean.numpy(), batch_mean, rtol=0.01,
                               atol=1e-3)
