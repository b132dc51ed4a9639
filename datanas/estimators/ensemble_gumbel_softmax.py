"""The Ensemble Gumbel-Softmax (EGS) estimator as a Keras 3 layer.

Paper: Chang et al., "DATA: Differentiable ArchiTecture Approximation",
NeurIPS 2019, Definition 1.  Given logits over K options, EGS draws M hard
Gumbel-Softmax samples from softmax(logits) and takes their elementwise
maximum.  The result is a binary code with between 1 and min(M, K) ones, so
several options can be switched on at once (M=1 is plain Gumbel-Softmax).

Forward values are exactly 0.0 or 1.0, so a 0 bit can be used to *skip* the
option entirely.  Backward uses the straight-through rule: the gradient of
the hard code is routed to the elementwise maximum of the M relaxed
(temperature-softened) samples.  Because every relaxed sample is a softmax
over all K options, options that were not drawn this step still receive a
gradient through the softmax Jacobian and can be switched on later.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from datanas.core.tracking import SeedStateTracking
from datanas.estimators.base import Estimator, register_estimator

__all__ = ["EnsembleGumbelSoftmax", "inclusion_probabilities"]


def _check_num_samples(num_samples):
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(
            f"num_samples (M) must be an integer >= 1, got {num_samples!r}.")
    return int(num_samples)


def _check_temperature(temperature):
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(
            f"temperature must be a positive finite number, got {temperature!r}.") from None
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(
            f"temperature must be a positive finite number, got {temperature!r}.")
    return value


def inclusion_probabilities(logits, num_samples):
    """P(b_k = 1) = 1 - (1 - p_k)^M for an EGS code, p = softmax(logits).

    Computed as -expm1(M * log1p(-p)) for accuracy when p_k is tiny.
    """
    logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
    probs = tf.nn.softmax(logits, axis=-1)
    return -tf.math.expm1(float(num_samples) * tf.math.log1p(-probs))


@register_estimator("egs")
@keras.saving.register_keras_serializable(package="datanas")
class EnsembleGumbelSoftmax(SeedStateTracking, Estimator):
    """Samples binary codes with 1..M ones from logits over the last axis.

    Args:
      num_samples: M >= 1, the number of Gumbel-Softmax samples combined by
        an elementwise max.  M=1 is the ordinary straight-through
        Gumbel-Softmax (SNAS/GDAS estimator).
      temperature: softmax temperature (> 0) of the relaxed samples, which
        only affects gradients (the hard forward code does not depend on it).
        Stored in a non-trainable variable so it can be annealed during
        training with `set_temperature` without retracing a `tf.function`.
      seed: optional integer seed for the layer's own random stream.

    Call arguments:
      inputs: logits `[..., K]` (unnormalised log-probabilities).
      training: if true, sample (stochastic, straight-through gradient);
        otherwise return the deterministic code whose k-th bit is 1 where the
        inclusion probability `1-(1-p_k)^M` is >= 0.5 (argmax if no bit is).
      seed: optional `[2]` integer tensor.  When given, the sample is a pure
        function of (seed, logits) -- used by the search step so every
        replica draws the same architecture and a resumed run draws the
        same codes as an uninterrupted one.

    Output: same shape as the logits, dtype of the layer's compute dtype.
    """

    #: Codes are exactly 0/1, so a 0 bit lets the caller skip the option.
    binary_codes = True
    #: The temperature shapes the relaxed samples (annealed during search).
    uses_temperature = True

    def __init__(self, num_samples=1, temperature=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_samples = _check_num_samples(num_samples)
        initial = _check_temperature(temperature)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed must be an integer or None, got {seed!r}.")
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self._temperature = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(initial),
            trainable=False,
            dtype="float32",
            name="temperature",
        )
        self.built = True

    @classmethod
    def from_settings(cls, *, num_samples=1, temperature=1.0, seed=None, name="estimator"):
        return cls(num_samples, temperature, seed=seed, name=name)

    # -- temperature -------------------------------------------------------
    @property
    def temperature(self):
        """The current temperature (a scalar variable)."""
        return self._temperature

    def set_temperature(self, value):
        """Changes the temperature in place (no retracing).

        Python/numpy values are checked here; a tensor value is checked by a
        graph assertion when it is assigned.
        """
        if tf.is_tensor(value) or isinstance(value, tf.Variable):
            value = tf.cast(value, tf.float32)
            tf.debugging.assert_positive(value, message="temperature must be > 0")
        else:
            value = _check_temperature(value)
        self._temperature.assign(value)

    # -- probabilities -----------------------------------------------------
    def inclusion_probabilities(self, logits):
        """Per-option probability that a sampled code has that bit set."""
        return inclusion_probabilities(logits, self.num_samples)

    def deterministic_code(self, logits):
        """Bits where the inclusion probability is >= 0.5; argmax if none."""
        logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
        num_options = tf.shape(logits)[-1]
        bits = self.inclusion_probabilities(logits) >= 0.5
        fallback = tf.one_hot(tf.argmax(logits, axis=-1), num_options,
                              on_value=True, off_value=False, dtype=tf.bool)
        has_bit = tf.reduce_any(bits, axis=-1, keepdims=True)
        return tf.cast(tf.where(has_bit, bits, fallback), tf.float32)

    # -- sampling ----------------------------------------------------------
    def sample(self, logits, seed=None):
        """One EGS sample with straight-through gradients (float32)."""
        logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        noise_shape = tf.concat([[self.num_samples], tf.shape(logits)], axis=0)
        tiny = float(np.finfo(np.float32).tiny)
        if seed is None:
            uniform = keras.random.uniform(
                noise_shape, minval=tiny, maxval=1.0, dtype="float32",
                seed=self.seed_generator)
        else:
            uniform = tf.random.stateless_uniform(
                noise_shape, seed=tf.cast(seed, tf.int64), minval=tiny,
                maxval=1.0, dtype=tf.float32)
        gumbel = -tf.math.log(-tf.math.log(uniform))
        perturbed = log_probs[tf.newaxis] + gumbel            # [M, ..., K]
        relaxed = tf.nn.softmax(perturbed / self._temperature, axis=-1)
        hard = tf.one_hot(tf.argmax(perturbed, axis=-1), tf.shape(logits)[-1],
                          dtype=tf.float32)
        code = tf.reduce_max(hard, axis=0)
        surrogate = tf.reduce_max(relaxed, axis=0)
        # `surrogate - stop_gradient(surrogate)` is exactly 0.0 in the forward
        # pass, so the returned value is exactly the binary code.
        return code + (surrogate - tf.stop_gradient(surrogate))

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_samples": self.num_samples,
            "temperature": float(self._temperature.numpy()),
            "seed": self.seed,
        })
        return config
