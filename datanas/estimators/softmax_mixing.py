"""Softmax mixing: the continuous relaxation of DARTS (Liu et al. 2019, Eq. 2).

Every option gets the weight softmax(logits)_k; nothing is sampled, so all
options must be computed (``binary_codes = False``).  Same interface as the
EnsembleGumbelSoftmax layer, so a supernet takes either estimator.
"""

import keras
import tensorflow as tf

from datanas.estimators.base import Estimator, register_estimator

__all__ = ["SoftmaxMixing"]


@register_estimator("softmax")
@keras.saving.register_keras_serializable(package="datanas")
class SoftmaxMixing(Estimator):
    """Weights = softmax over the last axis (train and inference alike)."""

    binary_codes = False
    uses_temperature = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True

    def sample(self, logits, seed=None):
        del seed   # deterministic; computed in the logits' own dtype
        return tf.nn.softmax(tf.convert_to_tensor(logits), axis=-1)

    def deterministic_code(self, logits):
        return self.sample(logits)
