"""MixedEdge: one edge of a cell DAG holding all K candidate ops.

An edge is called with its input and a weight vector over the K ops:

* ``mode="sparse"`` (DATA/EGS, GDAS): the weights are a binary code (with
  straight-through gradients; divided by its count of non-``none`` ones when
  the edge averages its selected ops), so an op whose weight is 0 needs no
  backward pass, and under ``gradient="sampled"`` not even a forward one
  (below).  The op output is multiplied by its weight so the gradient
  reaches the code.  How an op with weight 0 is branched around (``skip``):

  - ``"cond"`` (default): each op in its own ``tf.cond`` branch; an
    untaken branch costs almost nothing at run time, but every branch and
    its gradient is a function of its own, which makes the graph slow to
    build and large in memory.  Static-shape compilers (TPU) need this form.
  - ``"examples"``: the op runs on the first ``bit * batch``
    examples, i.e. on all of them or on none; the selected outputs are
    concatenated along the batch and summed per example.  The graph is plain
    dataflow: it builds ~1.6x faster and holds about half the resident
    memory; in the full supernet its steady step is slower (README
    benchmark; isolated edges step as fast as with ``tf.cond``).  Ops of the
    space keep their batch-norm statistics and get exactly zero gradients on
    an empty batch (``ops.py``).
* ``mode="dense"`` (DARTS): every op is computed and mixed with the (soft)
  weights.  Used by the DARTS baseline and by the benchmarks.

What a sparse edge does with an op whose bit is 0 (``gradient``):

* ``"full"`` (default; the DATA authors' gradient): the op is computed
  forward only, as ``bit * stop_gradient(op(x))``.  Its value is 0, exactly as
  in the authors' ``MixedOp`` (every op times its 0/1 weight), and its bit
  gets the same straight-through gradient ``<dL/dy, op(x)>``; its weights
  and its input get none (a 0 weight gives them none in the authors' sum
  either), so no backward pass runs through undrawn ops.  A step costs the
  forward pass of every op plus the backward pass of the drawn ones.
* ``"sampled"`` (the fast variant): the op is not computed at all, so its
  bit's gradient is 0 and the step costs the sampled child.  Undrawn ops'
  logits then move only through the softmax coupling with the drawn ones.

Executed eagerly (the host-driven search step, ``execution="host"``), a
sparse edge reads its code on the host and calls only the selected ops, each
through the shared compiled layer functions (``engine/layer_functions.py``);
``skip`` only concerns the compiled graph.

The ``none`` op contributes zeros and is never computed in either mode.
"""

import functools
import math

import keras
import tensorflow as tf

from datanas.core.layer_functions import call_layer
from datanas.core.tracking import LayerList
from datanas.spaces.darts_cnn.genotype import CONV_PRIMITIVES
from datanas.spaces.darts_cnn.ops import build_conv_op

__all__ = ["MixedEdge", "EDGE_MODES", "SKIP_MECHANISMS", "EGS_GRADIENTS"]

EDGE_MODES = ("sparse", "dense")
#: What a sparse edge computes for an undrawn op (module docstring).
EGS_GRADIENTS = ("full", "sampled")


@functools.lru_cache(maxsize=None)
def empty_batches_keep_their_shape():
    """Whether this TensorFlow build gives an op on an empty batch its true
    output shape, which ``skip="examples"`` relies on.  With oneDNN kernels
    on some CPUs (seen on an AVX512-BF16 AMD EPYC host, TensorFlow 2.21) a
    convolution of zero examples returns its input unchanged: a 1x1,
    stride-2 convolution of [0, 6, 6, 4] to 2 channels gives [0, 6, 6, 4]."""
    with tf.init_scope():
        out = tf.nn.conv2d(tf.zeros([0, 6, 6, 4]), tf.zeros([1, 1, 4, 2]), 2, "VALID")
    return tuple(out.shape) == (0, 3, 3, 2)
SKIP_MECHANISMS = ("examples", "cond")


@keras.saving.register_keras_serializable(package="datanas")
class MixedEdge(keras.layers.Layer):
    """All candidate ops of one edge, combined by a per-op weight vector.

    Args:
      channels: channels of the input and of every op's output.
      stride: 1, or 2 for edges leaving the inputs of a reduction cell.
      primitives: op names (subset/ordering of CONV_PRIMITIVES); the k-th
        weight belongs to ``primitives[k]``.
      mode: "sparse" (skip ops whose weight is 0) or "dense" (compute all).
      skip: how sparse mode skips an op: "examples" or "cond" (see above).
      gradient: what sparse mode computes for an op whose bit is 0: "full"
        (forward only, so its bit gets its gradient) or "sampled" (nothing).
      affine: learnable BN scale/offset inside ops (False during search).
      search: search-time op variants (BN after pooling).

    Call arguments:
      inputs: ``[B, H, W, channels]``.
      weights: ``[K]`` weights, e.g. one row of an EGS code.
      training: forwarded to the ops' batch normalisation.
    """

    def __init__(self, channels, stride=1, primitives=CONV_PRIMITIVES, mode="sparse",
                 affine=False, search=True, skip="cond", gradient="full", **kwargs):
        super().__init__(**kwargs)
        if gradient not in EGS_GRADIENTS:
            raise ValueError(f"MixedEdge gradient must be one of {EGS_GRADIENTS}, "
                             f"got {gradient!r}.")
        self.gradient = gradient
        if mode not in EDGE_MODES:
            raise ValueError(f"MixedEdge mode must be one of {EDGE_MODES}, got {mode!r}.")
        if skip not in SKIP_MECHANISMS:
            raise ValueError(f"MixedEdge skip must be one of {SKIP_MECHANISMS}, got {skip!r}.")
        if skip == "examples" and mode == "sparse" and not empty_batches_keep_their_shape():
            raise ValueError(
                "skip='examples' (--sparse_skip=examples) runs unselected ops on empty batches, "
                "and this TensorFlow's oneDNN kernels give those wrong shapes on this CPU (a "
                "stride-2 convolution of 0 examples returned its input's shape). Use "
                "skip='cond' (the default), or start the process with "
                "TF_ENABLE_ONEDNN_OPTS=0.")
        self.skip = skip
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
        # The shape the ops run at (op cost tables, ``costs.py``).
        self.built_input_shape = tuple(input_shape)
        # Build every op now: variables cannot be created lazily inside a
        # tf.cond branch.
        for op in self.ops:
            if not op.built:
                op.build(tuple(input_shape))
        self.built = True

    def _output_size(self, inputs):
        """[height, width, channels] of every op's output, as a tensor."""
        shape = tf.shape(inputs)
        height = (shape[1] + self.stride - 1) // self.stride
        width = (shape[2] + self.stride - 1) // self.stride
        return tf.stack([height, width, self.channels])

    def _zeros(self, inputs):
        return tf.zeros(tf.concat([tf.shape(inputs)[:1], self._output_size(inputs)], axis=0),
                        dtype=inputs.dtype)

    def _sum_over_selected_examples(self, inputs, weights, training):
        """sum_k weights[k] * op_k(inputs) where each op runs on all examples
        if its weight is non-zero and on none otherwise.

        The weighted outputs are concatenated along the batch (unselected ops
        contribute no rows) and summed per example, so no zero tensor is ever
        materialised for an unselected op.
        """
        batch = tf.shape(inputs)[0]
        if self.gradient == "full":
            return self._sum_with_forward_only_undrawn(inputs, weights, training, batch)
        parts, selected = [], []
        for k, op in zip(self._op_positions, self.ops):
            on = tf.cast(tf.not_equal(weights[k], 0.0), tf.int32)
            parts.append(weights[k] * op(inputs[:batch * on], training=training))
            selected.append(on)
        stacked = tf.reshape(tf.concat(parts, axis=0), tf.concat(
            [[tf.add_n(selected), batch], self._output_size(inputs)], axis=0))
        total = tf.reduce_sum(stacked, axis=0)
        total.set_shape(self.compute_output_shape(inputs.shape))
        return total

    def _sum_with_forward_only_undrawn(self, inputs, weights, training, batch):
        """The ``skip="examples"`` form of ``gradient="full"``: every op runs
        on all examples, a drawn op differentiably and an undrawn one under
        ``stop_gradient`` (the other call of each op gets an empty batch)."""
        outputs = []
        for k, op in zip(self._op_positions, self.ops):
            on = tf.cast(tf.not_equal(weights[k], 0.0), tf.int32)
            drawn = op(inputs[:batch * on], training=training)
            undrawn = tf.stop_gradient(op(inputs[:batch * (1 - on)], training=training))
            outputs.append(weights[k] * tf.concat([drawn, undrawn], axis=0))
        total = tf.add_n(outputs)
        total.set_shape(self.compute_output_shape(inputs.shape))
        return total

    def _call_selected(self, inputs, weights, training):
        """Eager execution: the code is read on the host and only the ops
        with a non-zero weight run (all of them in dense mode)."""
        code = weights.numpy()
        forward_only = self.mode == "sparse" and self.gradient == "full"
        selected = [(k, op) for k, op in zip(self._op_positions, self.ops)
                    if self.mode == "dense" or forward_only or code[k] != 0]
        scales = tf.unstack(weights) if selected else []   # one op, not one slice per op
        outputs = []
        for k, op in selected:
            if self.mode == "sparse" and code[k] == 0:
                # Undrawn under gradient="full": value 0, gradient to the bit only.
                outputs.append(scales[k] * tf.stop_gradient(call_layer(op, inputs, training)))
            else:
                outputs.append(call_layer(op, inputs, training, scale=scales[k]))
        if not outputs:
            return self._zeros(inputs)
        return tf.add_n(outputs) if len(outputs) > 1 else outputs[0]

    def call(self, inputs, weights, training=None):
        weights = tf.cast(weights, inputs.dtype)
        if tf.executing_eagerly():
            return self._call_selected(inputs, weights, training)
        if self.mode == "sparse" and self.skip == "examples" and self.ops:
            return self._sum_over_selected_examples(inputs, weights, training)
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

            def forward_only(op=op, weight=weight):
                return weight * tf.stop_gradient(op(inputs, training=training))

            if self.gradient == "full":
                skip_op = forward_only

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
                "affine": self.affine, "search": self.search, "skip": self.skip,
                "gradient": self.gradient}
