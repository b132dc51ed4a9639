"""Mixed precision (``--dtype_policy=mixed_bfloat16``): searches and trainings
compute in bfloat16 while every variable stays float32, and float16 is refused
with one line saying why."""

import json
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from datanas.core.precision import DTYPE_POLICIES, set_dtype_policy
from datanas.engine.run_identity import RunRefused, plan_run
from datanas.searching.config import SearchConfig
from datanas.searching.run import run_search
from datanas.searching.searcher import Searcher
from datanas.spaces.darts_cnn.supernet import SearchNetwork
from datanas.spaces.darts_cnn.segmentation import NetworkDeepLabV3
from datanas.spaces.darts_cnn.genotype import DARTS_V2
from datanas.spaces.darts_rnn.language_model import RNNSearchModel
from datanas.tasks import LanguageModelingTask, SegmentationTask
from flags import core as flags_core

OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")


@pytest.fixture
def bfloat16():
    previous = keras.config.dtype_policy()
    set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("name, message", [
    ("mixed_float16", "float16 needs loss scaling"),
    ("bfloat16", "must be one of float32, mixed_bfloat16; got 'bfloat16'"),
])
def test_unsupported_policies_are_refused_in_one_line(name, message):
    previous = keras.config.dtype_policy()
    with pytest.raises(ValueError, match=message):
        set_dtype_policy(name)
    assert keras.config.dtype_policy().name == previous.name
    assert DTYPE_POLICIES == ("float32", "mixed_bfloat16")


def _weights_are_float32(model):
    """Every floating-point variable (weights, logits, statistics) is float32;
    integer ones (seed-generator states) do not count."""
    kinds = [keras.backend.standardize_dtype(v.dtype) for v in model.variables]
    floating = [k for k in kinds if "float" in k]
    return bool(floating) and all(k == "float32" for k in floating)


def _flags(**values):
    """A stand-in for absl's FlagValues holding one trainer's flags."""
    found = [types.SimpleNamespace(name=k, value=v) for k, v in values.items()]
    return types.SimpleNamespace(flags_by_module_dict=lambda: {"trainers/search_cifar.py": found})


def test_run_directories_from_before_the_flag_resume_as_float32_runs(tmp_path):
    """A run directory written before --dtype_policy existed has no such key in
    its identity: it resumes at the default (float32), and is refused, naming
    the setting, for a bfloat16 run."""

    older = flags_core.run_identity(_flags(epochs=3), "t", {})
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_identity.json").write_text(json.dumps(older))
    added = flags_core.added_defaults()   # what prepare_run passes
    now = flags_core.run_identity(_flags(epochs=3, dtype_policy="float32"), "t", {})
    assert now["settings"]["dtype_policy"] == "float32"
    assert plan_run(str(run), now, result_file="r.json", added_defaults=added).status == "resume"
    mixed = flags_core.run_identity(_flags(epochs=3, dtype_policy="mixed_bfloat16"), "t", {})
    with pytest.raises(RunRefused, match="dtype_policy: run 'float32', now 'mixed_bfloat16'"):
        plan_run(str(run), mixed, result_file="r.json", added_defaults=added)


@pytest.mark.parametrize("method", ["data", "darts"])
def test_search_steps_compute_in_bfloat16_and_learn_float32_logits(bfloat16, method, global_seed):
    """EGS (sparse child) and DARTS' softmax mixture both run in bfloat16; the
    architecture logits and network weights are float32 and move; losses are
    finite."""
    weighting = {"data": {},
                 "darts": {"weighting": "softmax", "mode": "dense", "egs_scope": "edge"}}[method]
    global_seed(0)
    model = SearchNetwork(10, init_channels=4, num_cells=3, num_nodes=2, num_samples=3, seed=0,
                          primitives=OPS, **weighting)
    model.build((None, 8, 8, 1))
    searcher = Searcher(model, SearchConfig(epochs=1, seed=0), steps_per_epoch=2)
    images = tf.random.stateless_normal([8, 8, 8, 1], seed=[1, 2])
    labels = tf.constant([0, 1, 2, 3, 4, 5, 6, 7])
    arch0 = [v.numpy().copy() for v in model.architecture_variables]
    logits = model(images, training=True)
    losses = [float(searcher.joint_step((images, labels))["loss"]) for _ in range(2)]
    assert logits.dtype == tf.bfloat16
    assert _weights_are_float32(model)
    assert all(np.isfinite(losses)), losses
    assert all(not np.allclose(a, v.numpy()) for a, v in zip(arch0, model.architecture_variables))


def test_a_search_on_digits_finishes_and_derives_a_cell_in_bfloat16(bfloat16, tmp_path):
    """The whole search loop (validation, derivation, TensorBoard pictures,
    result files) under the policy."""
    pytest.importorskip("sklearn")
    from data_tf.image_datasets import load_image_dataset  # pylint: disable=import-outside-toplevel
    from data_tf.search_inputs import make_search_inputs  # pylint: disable=import-outside-toplevel

    inputs = make_search_inputs(load_image_dataset("digits"), batch_size=32, train_size=200,
                                seed=0)
    model = SearchNetwork(10, init_channels=4, num_cells=3, num_nodes=2, num_samples=3, seed=0,
                          primitives=OPS)
    model.build((None, 8, 8, 1))
    result = run_search(model, inputs, SearchConfig(epochs=1, seed=0), str(tmp_path), verbose=0)
    assert result.genotype.normal and result.genotype.reduce
    assert (tmp_path / "genotype.json").exists() and (tmp_path / "search_result.json").exists()


def test_recurrent_models_compute_in_float32_under_a_bfloat16_policy(bfloat16, global_seed):
    """The recurrent language models pin float32 (their forward reads variables
    outside Keras' autocasting call): a search step works under a global
    bfloat16 policy, and asking for bfloat16 explicitly is one clear error."""
    global_seed(0)
    model = RNNSearchModel(40, hidden_size=8, num_nodes=3, num_samples=2, state_rows=4, seed=0)
    searcher = Searcher(model, SearchConfig(epochs=1, seed=1, learning_rate=20.0,
                                            learning_rate_min=20.0, momentum=0.0,
                                            grad_clip=0.25, arch_learning_rate=3e-3),
                        steps_per_epoch=2, task=LanguageModelingTask())
    tokens = np.random.default_rng(0).integers(0, 40, size=(4, 9)).astype("int32")
    batch = {"tokens": tf.constant(tokens[:, :8]), "targets": tf.constant(tokens[:, 1:]),
             "reset": tf.constant(True), "stream": tf.constant(0),
             "seed": tf.constant([0, 1], tf.int64)}
    arch0 = [v.numpy().copy() for v in model.architecture_variables]
    losses = [float(searcher.joint_step(batch)["loss"]) for _ in range(2)]
    assert model.compute_dtype == "float32" and _weights_are_float32(model)
    assert all(np.isfinite(losses)), losses
    assert any(not np.allclose(a, v.numpy()) for a, v in zip(arch0, model.architecture_variables))
    with pytest.raises(ValueError, match="compute in float32; got dtype policy 'mixed_bfloat16'"):
        RNNSearchModel(40, hidden_size=8, num_nodes=3, dtype="mixed_bfloat16")


def test_segmentation_network_computes_in_bfloat16(bfloat16):
    task = SegmentationTask(num_classes=5, ignore_label=255, class_names=tuple("abcde"))
    model = NetworkDeepLabV3(DARTS_V2, num_classes=5, init_channels=4, layers=3,
                             output_stride=8, aspp_channels=8)
    images = tf.random.stateless_normal([2, 32, 32, 3], seed=[5, 6])
    labels = tf.random.stateless_uniform([2, 32, 32], seed=[7, 8], maxval=5, dtype=tf.int32)
    with tf.GradientTape() as tape:
        outputs = model(images, training=True)
        loss = tf.reduce_mean(task.per_example_loss(labels, outputs))
    grads = tape.gradient(loss, model.trainable_variables)
    assert model.features(images).dtype == tf.bfloat16 and loss.dtype == tf.float32
    assert _weights_are_float32(model)
    assert all(g is not None and bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads)
