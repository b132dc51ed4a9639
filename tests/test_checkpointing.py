"""Checkpoints restore every model variable, including cells kept in lists."""

import numpy as np
import tensorflow as tf

from datanas.checkpointing import model_variables
from datanas.genotypes import DARTS_V2
from datanas.networks import NetworkCIFAR
from datanas.search_network import SearchNetwork

OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")


def _round_trip(make, tmp_path):
    model = make()
    for index, variable in enumerate(model.variables):
        variable.assign(tf.fill(variable.shape, 0.5 + index).numpy().astype(variable.dtype))
    path = tf.train.Checkpoint(model=model, model_variables=model_variables(model)).write(
        str(tmp_path / "ckpt"))
    fresh = make()
    status = tf.train.Checkpoint(model=fresh, model_variables=model_variables(fresh)).read(path)
    status.assert_existing_objects_matched()
    moving = [v for v in fresh.variables if "moving_" in v.path and "/cell_" in v.path]
    assert moving, "the networks' cells hold batch-norm statistics"
    for before, after in zip(model.variables, fresh.variables):
        np.testing.assert_array_equal(before.numpy(), after.numpy(), err_msg=after.path)


def test_search_network_checkpoint_restores_cell_statistics(tmp_path):
    def make():
        model = SearchNetwork(10, init_channels=4, num_cells=3, num_nodes=2, num_samples=2,
                              seed=0, primitives=OPS)
        model.build((None, 8, 8, 1))
        return model
    _round_trip(make, tmp_path)


def test_genotype_network_checkpoint_restores_cell_statistics(tmp_path):
    def make():
        model = NetworkCIFAR(DARTS_V2, num_classes=10, init_channels=8, layers=3)
        model.build((None, 16, 16, 1))
        return model
    _round_trip(make, tmp_path)
