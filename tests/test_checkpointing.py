"""Checkpoints and .keras files hold every variable under a stable path.

Claims: a plain ``tf.train.Checkpoint(model=net)`` holds every variable of
the supernet and of a genotype network (cells, batch-norm statistics and
architecture logits included); it restores into a separately constructed
network -- in another process, after other layers were built -- with
identical inference outputs; a checkpoint of another architecture is refused
with one message naming the difference; ``import datanas`` alone lets
``keras.models.load_model`` rebuild a saved network in a fresh process.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from datanas.engine.checkpoints import CheckpointMismatchError, restore_exactly
from datanas.spaces.darts_cnn.genotype import DARTS_V2
from datanas.spaces.darts_cnn.networks import NetworkCIFAR
from datanas.spaces.darts_cnn.supernet import SearchNetwork

OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _supernet(channels=4):
    model = SearchNetwork(10, init_channels=channels, num_cells=3, num_nodes=2, num_samples=2,
                          seed=0, primitives=OPS)
    model.build((None, 8, 8, 1))
    return model


def _genotype_network():
    model = NetworkCIFAR(DARTS_V2, num_classes=10, init_channels=8, layers=3)
    model.build((None, 16, 16, 1))
    return model


def _distinct_values(model):
    for index, variable in enumerate(model.variables):
        variable.assign(np.full(variable.shape, 0.5 + 0.01 * index, variable.dtype))


@pytest.mark.parametrize("make", [_supernet, _genotype_network], ids=["supernet", "genotype"])
def test_plain_checkpoint_holds_every_variable(make, tmp_path):
    model = make()
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    saved = [k for k, _ in tf.train.list_variables(path) if k.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(model.variables)
    assert any("moving_mean" in k and "/cells/" in k for k in saved)
    if isinstance(model, SearchNetwork):
        assert any("arch_normal_node2" in k for k in saved)


@pytest.mark.parametrize("make", [_supernet, _genotype_network], ids=["supernet", "genotype"])
def test_restores_into_a_network_built_after_other_layers(make, tmp_path):
    model = make()
    _distinct_values(model)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    keras.layers.Dense(3).build((None, 2))   # shifts Keras' auto-numbered layer names
    fresh = make()
    assert [v.path for v in fresh.variables] != [v.path for v in model.variables]
    restore_exactly(tf.train.Checkpoint(model=fresh), path)
    for before, after in zip(model.variables, fresh.variables):
        np.testing.assert_array_equal(before.numpy(), after.numpy(), err_msg=after.path)


def test_checkpoint_of_another_architecture_is_refused_by_name(tmp_path):
    path = tf.train.Checkpoint(model=_supernet(channels=4)).write(str(tmp_path / "ckpt"))
    other = _supernet(channels=6)
    before = [v.numpy().copy() for v in other.variables]
    with pytest.raises(CheckpointMismatchError, match=r"cells/item_0/.*\(.*4.*\) in the "
                                                      r"checkpoint vs .*now"):
        restore_exactly(tf.train.Checkpoint(model=other), path)
    for value, variable in zip(before, other.variables):   # nothing was assigned
        np.testing.assert_array_equal(value, variable.numpy())


def _run(code, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(tmp_path),
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_fresh_process_restores_checkpoint_and_loads_keras_file(tmp_path):
    model = _genotype_network()
    _distinct_values(model)
    images = np.random.default_rng(0).normal(size=(4, 16, 16, 1)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", model(images, training=False).numpy())
    tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    model.save(str(tmp_path / "model.keras"))
    _run("""
        import numpy as np
        import datanas  # the only datanas import: registers every class
        import keras, tensorflow as tf
        images, expected = np.load("images.npy"), np.load("expected.npy")
        loaded = keras.models.load_model("model.keras")
        np.testing.assert_allclose(loaded(images, training=False).numpy(), expected, atol=1e-5)
        from datanas.engine.checkpoints import restore_exactly
        from datanas.spaces.darts_cnn.genotype import DARTS_V2
        from datanas.spaces.darts_cnn.networks import NetworkCIFAR
        keras.layers.Conv2D(2, 3).build((None, 8, 8, 1))
        fresh = NetworkCIFAR(DARTS_V2, num_classes=10, init_channels=8, layers=3)
        fresh.build((None, 16, 16, 1))
        restore_exactly(tf.train.Checkpoint(model=fresh), "ckpt")
        np.testing.assert_allclose(fresh(images, training=False).numpy(), expected, atol=1e-5)
        print("ok")
    """, tmp_path)
