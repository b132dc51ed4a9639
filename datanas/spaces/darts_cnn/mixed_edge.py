"""MixedEdge: one edge of a cell DAG holding all K candidate ops.

An edge is called with its input and a weight vector over the K ops:

* ``mode="sparse"`` (DATA/EGS, GDAS): the weights are a binary code (with
  straight-through gradients).  Each op sits in its own ``tf.cond`` branch
  and is executed only when its bit is non-zero, so the cost of a search step
  follows the sampled child network, not the whole supernet.  The op output
  is multiplied by its (exactly 1.0) bit so the gradient reaches the code.
* ``mode="dense"`` (DARTS): every op is computed and mixed with the (soft)
  weights.  Used by the DARTS baseline and by the benchmarks.

The ``none`` op contributes zeros and is never computed in either mode.
"""

import math

import keras
import tensorflow as tf

from datanas.engine.tracking import LayerList
from datanas.spaces.darts_cnn.genotype import CONV_PRIMITIVES
from datanas.spaces.darts_cnn.ops import build_conv_op

__all__ = ["MixedEdge", "EDGE_MODES"]

EDGE_MODES = ("sparse", "dense")


@keras.saving.register_keras_serializable(package="datanas")
class MixedEdge(keras.layers.Layer):
    """All candidate ops of one edge, combined by a per-op weight vector.

    Args:
      channels: channels of the input and of every op's output.
      stride: 1, or 2 for edges leaving the inputs of a reduction cell.
      primitives: op names (subset/ordering of CONV_PRIMITIVES); the k-th
        weight belongs to ``primitives[k]``.
      mode: "sparse" (skip ops whose weight is 0) or "dense" (compute all).
      affine: learnable BN scale/offset inside ops (False during search).
      search: search-time op variants (BN after pooling).

    Call arguments:
      inputs: ``[B, H, W, channels]``.
      weights: ``[K]`` weights, e.g. one row of an EGS code.
      training: forwarded to the ops' batch normalisation.
    """

    def __init__(self, channels, stride=1, primitives=CONV_PRIMITIVES, mode="sparse",
                 affine=False, search=True, **kwargs):
        super().__init__(**kwargs)
        if mode not in EDGE_MODES:
            raise ValueError(f"MixedEdge mode must be one of {EDGE_MODES}, got {mode!r}.")
        unknown = [p for p in primitives if p not in CONV_PRIMITIVES]
        if unknown or not primitives:
            raise ValueError(
                f"unknown primitive(s) {unknown or primitives!r}; allowed: {', '.join(CONV_PRIMITIVES)}.")
        self.channels, self.stride = channels, stride
        self.primitives = tuple(primitives)
        self.mode, self.affine, self.search = mode, affine, search
        built = [(k, build_conv_op(name, channels, stride, affine, search))
                 for k, name in enumerate(self.primitives)]
        # 'none' has no layer; the others are tracked with their code position.
        self._op_positions = tuple(k for k, op in built if op is not None)
        self.ops = LayerList([op for _, op in built if op is not None], name="ops")

    @property
    def candidate_ops(self):
        """One layer per primitive, in code order (None for 'none')."""
        layers = dict(zip(self._op_positions, self.ops))
        return [layers.get(k) for k in range(len(self.primitives))]

    @property
    def num_ops(self):
        return len(self.primitives)

    def build(self, input_shape):
        # Build every op now: variables cannot be created lazily inside a
        # tf.cond branch.
        for op in self.ops:
            if not op.built:
                op.build(tuple(input_shape))
        self.built = True

    def _zeros(self, inputs):
        shape = tf.shape(inputs)
        if self.stride > 1:
            height = (shape[1] + self.stride - 1) // self.stride
            width = (shape[2] + self.stride - 1) // self.stride
        else:
            height, width = shape[1], shape[2]
        return tf.zeros(tf.stack([shape[0], height, width, self.channels]), dtype=inputs.dtype)

    def call(self, inputs, weights, training=None):
        weights = tf.cast(weights, inputs.dtype)
        outputs = []
        for k, op in zip(self._op_positions, self.ops):
            weight = weights[k]
            if self.mode == "dense":
                outputs.append(weight * op(inputs, training=training))
                continue

            def run_op(op=op, weight=weight):
                return weight * op(inputs, training=training)

            def skip_op():
                return self._zeros(inputs)

            outputs.append(tf.cond(tf.not_equal(weight, 0.0), run_op, skip_op))
        if not outputs:
            return self._zeros(inputs)
        return tf.add_n(outputs)

    def compute_output_shape(self, input_shape):
        def reduce(size):
            return None if size is None else math.ceil(size / self.stride)
        return (input_shape[0], reduce(input_shape[1]), reduce(input_shape[2]), self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "stride": self.stride,
                "primitives": list(self.primitives), "mode": self.mode,
                "affine": self.affine, "search": self.search}
