"""Genotype networks: building, counting, training on real data, export and reload."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from data_tf.image_datasets import load_image_dataset
from data_tf.image_pipelines import make_image_pipeline
from data_tf.splits import take_subset
from datanas.spaces.darts_cnn.genotype import DARTS_V2, Genotype, save_genotype
from datanas.core.model_stats import IMAGENET_MOBILE_MULT_ADDS, count_multiply_adds, count_parameters
from datanas.spaces.darts_cnn.networks import NetworkCIFAR, NetworkImageNet
from datanas.training.trainer import TrainConfig, run_training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_DIR = "/usr/share/datasets/fashion-mnist"

# EGS-style genotype: several pairs per node, the same input with two ops.
MULTI_OP = Genotype(
    normal=[[("sep_conv_3x3", 0), ("skip_connect", 0), ("dil_conv_3x3", 1)],
            [("max_pool_3x3", 2)],
            [("avg_pool_3x3", 1), ("sep_conv_5x5", 3), ("skip_connect", 2)],
            [("dil_conv_5x5", 4)]],
    normal_concat=[2, 3, 4, 5],
    reduce=[[("max_pool_3x3", 0), ("skip_connect", 1)], [("sep_conv_3x3", 2)],
            [("avg_pool_3x3", 0), ("skip_connect", 3)], [("dil_conv_3x3", 1), ("sep_conv_5x5", 4)]],
    reduce_concat=[2, 3, 4, 5])


def test_multiply_add_count_matches_hand_count():
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
                              keras.layers.Flatten(), keras.layers.Dense(10, use_bias=False)])
    assert count_multiply_adds(model, (8, 8, 1)) == 8 * 8 * 4 * 9 + 256 * 10


def test_cifar_network_shapes_and_counts():
    model = NetworkCIFAR(MULTI_OP, num_classes=10, init_channels=8, layers=5)
    model.build((None, 32, 32, 3))
    logits, aux = model.logits_and_auxiliary(tf.zeros([2, 32, 32, 3]), training=True)
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    assert model(tf.zeros([2, 32, 32, 3])).shape == (2, 10)
    params = count_parameters(model)
    assert 0 < params < model.count_params()      # auxiliary head excluded
    assert count_multiply_adds(model, (32, 32, 3)) > params
    lines = []
    model.summary(print_fn=lines.append)
    assert any("cells" in line for line in lines) and len(model.cells) == 5
    assert model.cells[4].name == "cell_4"


def test_stem_stride_two_quarters_the_cells_work_and_round_trips():
    """28x28 inputs with a stride-2 stem: cells see 14x14, about a quarter of the
    multiply-adds, the same parameters; the config rebuilds the same network."""
    full = NetworkCIFAR(MULTI_OP, num_classes=10, init_channels=8, layers=5)
    full.build((None, 28, 28, 1))
    strided = NetworkCIFAR(MULTI_OP, num_classes=10, init_channels=8, layers=5, stem_stride=2)
    strided.build((None, 28, 28, 1))
    logits, aux = strided.logits_and_auxiliary(tf.zeros([2, 28, 28, 1]), training=True)
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    assert count_parameters(strided) == count_parameters(full)
    ratio = count_multiply_adds(strided, (28, 28, 1)) / count_multiply_adds(full, (28, 28, 1))
    assert 0.2 < ratio < 0.35, ratio
    images = tf.random.stateless_normal([3, 28, 28, 1], seed=[1, 2])
    rebuilt = NetworkCIFAR.from_config(strided.get_config())
    rebuilt.build((None, 28, 28, 1))
    rebuilt.set_weights(strided.get_weights())
    np.testing.assert_allclose(rebuilt(images).numpy(), strided(images).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="stem stride must be 1 or 2, got 3"):
        NetworkCIFAR(MULTI_OP, num_classes=10, init_channels=8, layers=5, stem_stride=3)


def test_the_final_network_is_a_body_under_the_tasks_head(tmp_path):
    """A task's head ends the found network in place of the classifier; it
    is saved with the network (.keras round trip) and the space builds it
    through final_network.  Without one the classifier keeps its original
    names, so earlier checkpoints and model files still load."""
    from datanas.spaces import get_space  # pylint: disable=import-outside-toplevel

    class Regression(keras.layers.Layer):   # any head a task may bring
        def build(self, input_shape):
            self.out = self.add_weight(shape=(input_shape[-1], 3), name="out")

        def call(self, features):
            return keras.ops.matmul(keras.ops.mean(features, axis=(1, 2)), self.out)

    keras.saving.register_keras_serializable(package="tests")(Regression)
    net = get_space("darts_cnn").final_network(MULTI_OP, setting="cifar", num_classes=10,
                                               init_channels=8, layers=5, head=Regression())
    net.build((None, 16, 16, 3))
    images = tf.random.stateless_normal([2, 16, 16, 3], seed=[3, 4])
    assert net(images).shape == (2, 3)
    assert not hasattr(net, "classifier")
    assert {id(v) for v in net.head.weights} <= {id(v) for v in net.main_variables()}
    path = str(tmp_path / "net.keras")
    net.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded(images).numpy(), net(images).numpy(), atol=1e-5)
    plain = NetworkCIFAR(MULTI_OP, num_classes=10, init_channels=8, layers=5)
    plain.build((None, 16, 16, 3))
    assert plain.head is None and plain.classifier.name == "classifier"
    with pytest.raises(TypeError, match="head must be a Keras layer, got str"):
        NetworkCIFAR(MULTI_OP, num_classes=10, init_channels=8, layers=5, head="dense")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_a_found_network_trains_under_a_mixed_precision_policy(policy):
    """Reused in a model that runs in mixed precision (TPU bfloat16, GPU
    float16): drop-path's coin flips stay float32, the network computes in
    the half type with float32 weights, and a training step's gradients
    are finite."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = NetworkCIFAR(MULTI_OP, num_classes=10, init_channels=8, layers=3, stem_stride=2)
        model.build((None, 28, 28, 1))
        model.drop_path_rate.assign(0.3)
        images = tf.random.stateless_normal([4, 28, 28, 1], seed=[3, 4])
        with tf.GradientTape() as tape:
            logits, aux = model.logits_and_auxiliary(images, training=True)
            loss = tf.reduce_mean(tf.cast(logits, tf.float32) ** 2 + tf.cast(aux, tf.float32) ** 2)
        grads = tape.gradient(loss, model.trainable_variables)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert logits.dtype == keras.mixed_precision.Policy(policy).compute_dtype
    assert aux is not None and all(v.dtype == tf.float32 for v in model.trainable_variables)
    assert all(g is not None and bool(tf.reduce_all(tf.math.is_finite(g))) for g in grads)


def test_imagenet_mobile_network_reports_mult_adds():
    model = NetworkImageNet(DARTS_V2, num_classes=1000)
    model.build((None, 224, 224, 3))
    assert model(tf.zeros([1, 224, 224, 3])).shape == (1, 1000)
    params = count_parameters(model)
    mult_adds = count_multiply_adds(model, (224, 224, 3))
    # DARTS reports 4.7M parameters / 574M mult-adds for this cell; our own
    # count of the same network must land close to that.
    assert 4.0e6 < params < 5.5e6, params
    assert 450e6 < mult_adds < IMAGENET_MOBILE_MULT_ADDS, mult_adds


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="Debian dataset-fashion-mnist not installed")
def test_train_export_reload_on_fashion_mnist(tmp_path, global_seed):
    global_seed(0)
    data = load_image_dataset("fashion_mnist")
    images, labels = take_subset(data.train_images, data.train_labels, 1536, seed=0)
    test_x, test_y = take_subset(data.test_images, data.test_labels, 500, seed=0)
    model = NetworkCIFAR(MULTI_OP, num_classes=10, init_channels=8, layers=3)
    model.build((None, 28, 28, 1))

    def train_data(epoch, context):
        return make_image_pipeline(images, labels, batch_size=64, training=True, mean=data.mean,
                                   std=data.std, seed=0, epoch=epoch, drop_remainder=True,
                                   input_context=context)

    def test(context=None):
        return make_image_pipeline(test_x, test_y, batch_size=100, training=False,
                                   mean=data.mean, std=data.std, input_context=context)
    export_dir = str(tmp_path / "export")
    # The test split given as a final set is evaluated once, after the last epoch.
    results = run_training(model, train_data, {}, TrainConfig(epochs=2, learning_rate=0.05,
                                                               drop_path_prob=0.1),
                           str(tmp_path / "run"), steps_per_epoch=24, image_shape=(28, 28, 1),
                           export_dir=export_dir, verbose=0, final_eval_sets={"test": test})
    # 10 classes: chance is 0.1; 500 test images make 0.3 far beyond noise.
    assert results["final"]["test_accuracy"] > 0.3
    assert (tmp_path / "run" / "checkpoints").is_dir()
    records = [json.loads(line) for line in
               (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [("test_accuracy" in record) for record in records] == [False, True]

    batch = next(iter(test()))[0][:16]
    expected = model(batch, training=False).numpy()
    reloaded = tf.saved_model.load(export_dir)
    np.testing.assert_allclose(reloaded.serve(batch).numpy(), expected, rtol=1e-4, atol=1e-4)
    layer = keras.layers.TFSMLayer(export_dir, call_endpoint="serve")
    np.testing.assert_allclose(layer(batch).numpy(), expected, rtol=1e-4, atol=1e-4)
    assert "serve" in reloaded.signatures or "serving_default" in reloaded.signatures

    keras_model = keras.models.load_model(tmp_path / "run" / "model.keras")
    np.testing.assert_allclose(keras_model(batch, training=False).numpy(), expected,
                               rtol=1e-4, atol=1e-4)

    # Resuming with the same model_dir and more epochs continues from epoch 2.
    model2 = NetworkCIFAR(MULTI_OP, num_classes=10, init_channels=8, layers=3)
    model2.build((None, 28, 28, 1))
    results2 = run_training(model2, train_data, {"test": test},
                            TrainConfig(epochs=3, learning_rate=0.05, drop_path_prob=0.1),
                            str(tmp_path / "run"), steps_per_epoch=24, image_shape=(28, 28, 1),
                            verbose=0)
    history = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(h)["epoch"] for h in history] == [1, 2, 3]
    assert results2["final"]["epoch"] == 3


def _run_trainer(args, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "trainers.train_cifar", *args,
                           f"--model_dir={tmp_path / 'run'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_train_cifar_bad_genotype_path(tmp_path):
    proc = _run_trainer([f"--genotype={tmp_path / 'missing.json'}", "--dataset=digits"], tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "missing.json" in proc.stderr


def test_train_cifar_incompatible_network(tmp_path):
    path = tmp_path / "g.json"
    save_genotype(DARTS_V2, path)
    proc = _run_trainer([f"--genotype={path}", "--dataset=digits", "--init_channels=7"], tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "7" in proc.stderr and "even" in proc.stderr


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="Debian dataset-fashion-mnist not installed")
def test_train_cifar_trainer_runs(tmp_path, summary_tags, readme_python_blocks):
    path = tmp_path / "g.json"
    save_genotype(MULTI_OP, path)
    export_dir = tmp_path / "run" / "saved_model"   # where the README's quickstart puts it
    proc = _run_trainer([f"--genotype={path}", "--dataset=fashion_mnist", "--train_size=512",
                         "--batch_size=64", "--epochs=1", "--layers=3", "--init_channels=8",
                         "--validation_fraction=0.1", f"--export_dir={export_dir}",
                         "--stem_stride=2", "--notest_each_epoch",
                         # exercises the distributed path: 2 replicas on 2 logical CPUs
                         "--distribution_strategy=mirrored", "--num_cpu_devices=2"],
                        tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "multiply-adds" in proc.stdout and "test_accuracy" in proc.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["best_selected_on"] == "valid"
    assert (export_dir / "saved_model.pb").exists()
    assert (tmp_path / "run" / "best").is_dir()
    tags = summary_tags(tmp_path / "run" / "tensorboard")
    assert tags["genotype"] == [(1, "text")]
    if shutil.which("dot"):
        assert tags["cell/normal"] == tags["cell/reduce"] == [(1, "images")]

    # The README's Python snippets, run as written in a fresh interpreter on this
    # run (their paths are runs/eval_fmnist/...): serving the export on the whole
    # test set with the snippet's own normalisation reproduces the trainer's
    # test loss, so the snippet preprocesses exactly as the trainer does; the
    # reuse snippet's three handles give the same logits.
    # Found by what they do, not by their number or order in the README.
    serving, = [b for b in readme_python_blocks if "loaded.serve(" in b and "test accuracy" in b]
    reuse, = [b for b in readme_python_blocks if "TFSMLayer" in b]
    check = textwrap.dedent("""
        import json
        batch = images[:8]
        expected = model(batch, training=False).numpy()
        loss = keras.losses.sparse_categorical_crossentropy(data.test_labels, logits,
                                                            from_logits=True)
        print("RESULT " + json.dumps({
            "shape": list(logits.shape), "loss": float(np.mean(loss)),
            "serve": float(np.abs(serve(batch).numpy() - expected).max()),
            "layer": float(np.abs(layer(batch).numpy() - expected).max())}))
        """)
    (tmp_path / "readme" / "runs").mkdir(parents=True)
    (tmp_path / "readme" / "runs" / "eval_fmnist").symlink_to(tmp_path / "run")
    script = tmp_path / "readme" / "snippets.py"
    script.write_text("\n".join([serving, reuse, check]))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    snippets = subprocess.run([sys.executable, str(script)], cwd=tmp_path / "readme", env=env,
                              capture_output=True, text=True, timeout=600)
    assert snippets.returncode == 0, snippets.stderr[-3000:]
    served = json.loads(snippets.stdout.split("RESULT ", 1)[1])
    accuracy = float(snippets.stdout.split("test accuracy", 1)[1].split()[0])
    assert accuracy == pytest.approx(results["final"]["test_accuracy"], abs=1e-6)
    assert served["shape"] == [10000, 10]
    assert served["loss"] == pytest.approx(results["final"]["test_loss"], rel=1e-4)
    assert served["serve"] < 1e-4 and served["layer"] < 1e-4


def _write_class_folders(root, classes=("cat", "dog", "owl"), per_class=4):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(rng.normal(60 + 70 * index, 20, (40 + 4 * i, 48, 3)), 0, 255)
                jpeg = tf.io.encode_jpeg(tf.constant(pixels.astype(np.uint8)))
                (folder / f"{name}_{i}.JPEG").write_bytes(jpeg.numpy())


def test_train_imagenet_trainer_on_class_folders(tmp_path):
    _write_class_folders(tmp_path / "imagenet")
    path = tmp_path / "g.json"
    save_genotype(DARTS_V2, path)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.train_imagenet", f"--genotype={path}",
         f"--data_dir={tmp_path / 'imagenet'}", f"--model_dir={tmp_path / 'run'}",
         "--image_size=32", "--batch_size=4", "--epochs=1", "--layers=3", "--init_channels=8"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 classes" in proc.stdout and "multiply-adds" in proc.stdout
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= record["valid_accuracy"] <= record["valid_top5"] == 1.0
    flags = json.loads((tmp_path / "run" / "flags.json").read_text())
    assert flags["image_size"] == 32 and flags["genotype"] == str(path)
