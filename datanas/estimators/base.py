"""What an estimator is, and the registry of estimators by name.

An estimator turns architecture logits ``[..., K]`` into the weights of a
step.  A search space uses only this interface:

* ``sample(logits, seed=None)``: the weights of a search step (stochastic
  or not), differentiable with respect to the logits;
* ``deterministic_code(logits)``: the weights at inference;
* ``binary_codes``: whether every weight is exactly 0 or 1, so a zero weight
  may skip its op (sparse execution) and the space may combine the selected
  ops as it likes;
* ``uses_temperature`` and ``set_temperature(value)``: whether the search's
  temperature schedule applies.

A new estimator is a subclass in its own module of this package, registered
with ``@register_estimator("name")``; the name is what a supernet's
``weighting`` setting and the search methods use.  Nothing else changes.
"""

import keras

from datanas.core.registry import Registry

__all__ = ["Estimator", "register_estimator", "estimator_class", "estimator_names",
           "make_estimator"]

_ESTIMATORS = Registry("weighting must be one of {known}; got {name!r}.")


class Estimator(keras.layers.Layer):
    """Base layer of every estimator (module docstring).

    Calling the layer gives ``sample`` when training and
    ``deterministic_code`` otherwise, in the layer's compute dtype.
    """

    #: Every weight is exactly 0 or 1 (a 0 lets the caller skip the option).
    binary_codes = False
    #: The search's temperature schedule applies (``set_temperature``).
    uses_temperature = False

    @classmethod
    def from_settings(cls, *, num_samples=1, temperature=1.0, seed=None, name="estimator"):
        """The estimator for a supernet's settings; a subclass takes the
        ones it uses (the default takes none but the name)."""
        del num_samples, temperature, seed
        return cls(name=name)

    def sample(self, logits, seed=None):
        """Weights of a search step (float32), differentiable in `logits`."""
        raise NotImplementedError(f"{type(self).__name__} does not define sample()")

    def deterministic_code(self, logits):
        """Weights at inference (float32)."""
        raise NotImplementedError(f"{type(self).__name__} does not define deterministic_code()")

    def set_temperature(self, value):
        """Changes the temperature; nothing for an estimator without one."""
        del value

    def call(self, inputs, training=None, seed=None):
        out = self.sample(inputs, seed=seed) if training else self.deterministic_code(inputs)
        return keras.ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def register_estimator(name):
    """Class decorator: registers an ``Estimator`` subclass under `name`."""
    def register(cls):
        if not (isinstance(cls, type) and issubclass(cls, Estimator)):
            raise TypeError(f"expected an Estimator subclass, got {cls!r}.")
        return _ESTIMATORS.register(name, cls)
    return register


def estimator_names():
    """The registered estimator names, in registration order."""
    return _ESTIMATORS.names()


def estimator_class(name):
    """The estimator class registered as `name`; ValueError naming the known ones."""
    return _ESTIMATORS.get(name)


def make_estimator(weighting, *, num_samples=1, temperature=1.0, seed=None, name="estimator"):
    """The estimator layer registered as `weighting`."""
    return estimator_class(weighting).from_settings(num_samples=num_samples,
                                                    temperature=temperature, seed=seed, name=name)
