"""A new estimator is one registered class: an estimator defined here, in
tests/, searches, derives, trains and draws through the library with no file
under datanas/, flags/ or trainers/ written for it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from datanas.estimators import Estimator, estimator_names, make_estimator, register_estimator
from datanas.searching.config import SearchConfig
from datanas.searching.searcher import Searcher
from datanas.spaces import get_space
from datanas.spaces.drawing import genotype_text
from datanas.tasks import ClassificationTask
from datanas.training.trainer import GenotypeTrainer, TrainConfig

NAME = "top2_straight_through"
OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")


@register_estimator(NAME)
class TopTwoStraightThrough(Estimator):
    """The two options of largest Gumbel-perturbed logit, as a 0/1 code;
    gradient of softmax(logits) passed straight through."""

    binary_codes = True

    def sample(self, logits, seed=None):
        logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
        if seed is None:
            uniform = tf.random.uniform(tf.shape(logits), 1e-6, 1.0)
        else:
            uniform = tf.random.stateless_uniform(tf.shape(logits), tf.cast(seed, tf.int64),
                                                  1e-6, 1.0)
        return self._top_two(logits - tf.math.log(-tf.math.log(uniform)), logits)

    def deterministic_code(self, logits):
        logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
        return self._top_two(logits, logits)

    @staticmethod
    def _top_two(scores, logits):
        k = tf.minimum(2, tf.shape(scores)[-1])
        threshold = tf.math.top_k(scores, k).values[..., -1:]
        code = tf.cast(scores >= threshold, tf.float32)
        soft = tf.nn.softmax(logits, axis=-1)
        return code + soft - tf.stop_gradient(soft)


def test_a_registered_estimator_is_a_weighting_by_its_name():
    assert NAME in estimator_names()
    estimator = make_estimator(NAME, num_samples=4, temperature=5.0, seed=1)
    code = estimator.sample(tf.constant([[0.0, 1.0, 2.0, 3.0]]), seed=tf.constant([1, 2]))
    assert isinstance(estimator, Estimator) and float(tf.reduce_sum(code)) == 2.0


def test_an_unknown_weighting_names_the_registered_ones():
    with pytest.raises(ValueError, match=f"weighting must be one of .*{NAME}"):
        make_estimator("no_such_estimator")


def test_the_new_estimator_searches_derives_trains_and_draws():
    space = get_space("darts_cnn")
    settings = space.settings_class(num_cells=3, init_channels=4, num_nodes=2, primitives=OPS)
    supernet = space.build_supernet(settings, num_outputs=4, input_shape=(8, 8, 1),
                                    weighting=NAME, mode="sparse", num_samples=1, scope="edge",
                                    temperature=1.0, seed=0)
    assert isinstance(supernet.estimator, TopTwoStraightThrough)
    searcher = Searcher(supernet, SearchConfig(epochs=1, seed=0, execution="host"),
                        steps_per_epoch=2, task=ClassificationTask(4))
    before = [v.numpy().copy() for v in supernet.architecture_variables]
    rng = np.random.default_rng(0)
    batch = (tf.constant(rng.normal(size=(6, 8, 8, 1)), tf.float32),
             tf.constant(rng.integers(0, 4, size=6), tf.int32))
    losses = [float(searcher.joint_step(batch)["loss"]) for _ in range(2)]
    assert all(np.isfinite(losses))
    moved = [not np.allclose(a, v.numpy()) for a, v in zip(before, supernet.architecture_variables)]
    assert any(moved), "the straight-through gradient reaches the architecture logits"

    genotype = space.derive(supernet, "darts", 0)
    assert "node 2 = sum of" in genotype_text(genotype)

    network = space.final_network(genotype, num_classes=4, init_channels=4, layers=3,
                                  auxiliary=False)
    network.build((None, 8, 8, 1))
    trainer = GenotypeTrainer(network, TrainConfig(epochs=1), steps_per_epoch=1,
                              global_batch_size=6, task=ClassificationTask(4))
    metrics = trainer.train_step(batch)
    assert np.isfinite(float(metrics["loss"]))
    assert isinstance(network, keras.Model)
