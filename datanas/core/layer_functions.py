"""Compiled layer functions shared by every layer of one configuration.

A host-driven search step (``execution="host"``, see ``searching/searcher.py``)
runs the supernet eagerly: Python reads the sampled code and calls only the
selected ops, so nothing of the unselected supernet is ever built or run.
Calling Keras layers eagerly op by op would be slow, and compiling one
function per layer would rebuild the supernet's graph piece by piece.  Layers
that differ only in their variables share one compiled function instead:

    functions = LayerFunctions()
    with functions.active():
        y = call_layer(op, x, training=True, scale=bit)   # bit * op(x)

The function of a (layer class, config without the name, input shape but
the batch size, dtype, training) key is traced once, for any batch size, from
the first layer seen with that key (its template), and takes the variables
of the layer being called as arguments: the template runs statelessly on them (``Layer.stateless_call``) and the
new values of non-trainable variables (batch-norm moving statistics) are
assigned to the caller's variables inside the function.  A supernet of
hundreds of ops therefore compiles a few dozen small functions; gradients
reach each caller's variables through the function call.

Outside ``active()``, or while tracing a graph (``tf.function``), or for a
layer without variables, ``call_layer`` is a plain layer call, so the same
model code serves the compiled graph path.
"""

import contextlib
import json
import logging
import threading

import tensorflow as tf

from datanas.core.replicas import replica_component

__all__ = ["LayerFunctions", "call_layer", "configuration_key"]

_ACTIVE = threading.local()
_COMPILE_LOCK = threading.RLock()


def configuration_key(layer):
    """What two layers of the same computation share: class and config but
    the name (a hashable tuple)."""
    config = {k: v for k, v in layer.get_config().items() if k != "name"}
    return (type(layer).__module__, type(layer).__qualname__,
            json.dumps(config, sort_keys=True, default=str))


class LayerFunctions:
    """A cache of compiled functions, one per layer configuration and shape."""

    def __init__(self):
        self._functions = {}   # configuration key -> concrete function
        self._by_layer = {}    # (id(layer), shape, dtype, training) -> (layer, function)

    def __len__(self):
        return len(self._functions)

    @contextlib.contextmanager
    def active(self):
        """Routes `call_layer` through this cache in the current thread
        (strategies run replicas in threads; each enters its own scope)."""
        previous = getattr(_ACTIVE, "functions", None)
        _ACTIVE.functions = self
        try:
            yield self
        finally:
            _ACTIVE.functions = previous

    @staticmethod
    def key(layer, inputs, training):
        """What makes two layer calls share a function: class, config (but
        the name), input shape without the batch size, dtype, mode."""
        return configuration_key(layer) + (tuple(inputs.shape[1:]), inputs.dtype.name,
                                           bool(training))

    @staticmethod
    def _compile(template, inputs, training):
        """The template's call as a concrete function of (inputs of any batch
        size, trainable variables, non-trainable variables, scale).

        Traced once for a batch of unknown size, so a last short batch or
        another replica's share runs the same function: traces do not
        depend on which batch came first, and a resumed run executes the
        same functions as an uninterrupted one."""
        def apply(inputs, trainable, non_trainable, scale):
            outputs, updated = template.stateless_call(
                [v.read_value() for v in trainable], [v.read_value() for v in non_trainable],
                inputs, training=training)
            if training:
                for variable, value in zip(non_trainable, updated):
                    variable.assign(value)
            return outputs * tf.cast(scale, outputs.dtype)
        spec = tf.TensorSpec((None,) + tuple(inputs.shape[1:]), inputs.dtype)
        return tf.function(apply).get_concrete_function(
            spec, [replica_component(v) for v in template.trainable_variables],
            [replica_component(v) for v in template.non_trainable_variables],
            tf.TensorSpec((), inputs.dtype))

    def function_for(self, layer, inputs, training):
        """The shared function for this layer call (compiled on first use)."""
        fast_key = (id(layer), tuple(inputs.shape[1:]), inputs.dtype.name, bool(training))
        entry = self._by_layer.get(fast_key)
        if entry is not None:
            return entry[1]
        with _COMPILE_LOCK:   # replica threads may meet a new key together
            key = self.key(layer, inputs, training)
            function = self._functions.get(key)
            if function is None:
                # Each function is traced once, by design; TensorFlow's
                # frequent-retracing warning counts the traces of all of them
                # (one Python source) together, so it is muted meanwhile.
                logger = tf.get_logger()
                level = logger.level
                logger.setLevel(logging.ERROR)
                try:
                    function = self._compile(layer, inputs, bool(training))
                finally:
                    logger.setLevel(level)
                self._functions[key] = function
            # The layer is kept referenced so its id cannot be reused.
            self._by_layer[fast_key] = (layer, function)
        return function

    def __call__(self, layer, inputs, training=None, scale=1.0):
        function = self.function_for(layer, inputs, training)
        return function(inputs, [replica_component(v) for v in layer.trainable_variables],
                        [replica_component(v) for v in layer.non_trainable_variables],
                        tf.convert_to_tensor(scale, inputs.dtype))


def call_layer(layer, inputs, training=None, scale=None):
    """``scale * layer(inputs, training=training)``, through the active
    `LayerFunctions` when executing eagerly (see the module docstring)."""
    functions = getattr(_ACTIVE, "functions", None)
    if (functions is not None and tf.executing_eagerly() and layer.weights
            and not isinstance(training, tf.Tensor)):
        return functions(layer, inputs, training, 1.0 if scale is None else scale)
    outputs = layer(inputs, training=training)
    return outputs if scale is None else outputs * tf.cast(scale, outputs.dtype)
