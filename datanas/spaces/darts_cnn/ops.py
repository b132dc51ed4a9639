"""Candidate operations of the convolutional search space (paper Section 4.1).

The eight primitives of DARTS/DATA: 3x3 and 5x5 separable convolutions (each
applied twice), 3x3 and 5x5 dilated separable convolutions, 3x3 max and
average pooling, identity (a factorized reduction when the stride is 2) and
zero.  Convolutions follow the ReLU-Conv-BN order.  During search the batch
normalisations are not affine (paper, following DARTS); pooling is followed by
a non-affine BN in search mode only.

Every op is a Keras layer whose `build` builds its sub-layers explicitly, so
a `MixedEdge` can create all variables up front and then run each op inside
a `tf.cond` branch that is skipped when its code bit is 0.  Layout is NHWC,
which every device supports.
"""

import math

import keras
import tensorflow as tf

from datanas.core.tracking import LayerList
from datanas.spaces.darts_cnn.genotype import CONV_PRIMITIVES

__all__ = [
    "SkippableBatchNorm", "SkippableSeparableConv2D", "OpChain", "ReLUConvBN", "SepConv",
    "DilConv", "Pool", "Identity",
    "FactorizedReduce", "Subsample", "build_conv_op", "cell_input_preprocessing",
    "CONV_PRIMITIVES",
]

# PyTorch's BN momentum 0.1 corresponds to Keras momentum 0.9.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="datanas")
class SkippableBatchNorm(keras.layers.BatchNormalization):
    """Batch normalisation that leaves its moving statistics untouched when
    called on an empty batch.

    A sparse MixedEdge skips an unselected op by running it on zero examples
    (``mixed_edge.py``); the batch moments of an empty batch are NaN, so
    without this guard the skipped op's statistics would be destroyed.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        before = (tf.identity(self.moving_mean.value), tf.identity(self.moving_variance.value))
        outputs = super().call(inputs, training=training, mask=mask)
        empty = tf.equal(tf.shape(inputs)[0], 0)
        for variable, old in zip((self.moving_mean, self.moving_variance), before):
            variable.assign(tf.where(empty, old, variable.value))
        return outputs


def _gradient_zeroed_if_empty(kernel, batch):
    """`kernel` unchanged, with its gradient forced to exactly zero when the
    batch is empty.

    TensorFlow's CPU depthwise-convolution filter gradient returns
    uninitialised memory, not zeros, for an empty batch (measured with
    TF 2.21 in eager mode), so a skipped op would receive garbage gradients.
    ``tf.where`` selects without arithmetic, so NaN garbage cannot leak.
    """
    nonempty = tf.greater(batch, 0)

    @tf.custom_gradient
    def guarded(value):
        def grad(upstream):
            return tf.where(nonempty, upstream, tf.zeros_like(upstream))
        return tf.identity(value), grad

    return guarded(tf.convert_to_tensor(kernel))


@keras.saving.register_keras_serializable(package="datanas")
class SkippableSeparableConv2D(keras.layers.SeparableConv2D):
    """SeparableConv2D whose depthwise-kernel gradient is exactly zero on an
    empty batch (see `_gradient_zeroed_if_empty`; the pointwise convolution's
    filter gradient is already zero there)."""

    def call(self, inputs):
        outputs = keras.ops.separable_conv(
            inputs, _gradient_zeroed_if_empty(self.depthwise_kernel, tf.shape(inputs)[0]),
            self.pointwise_kernel, strides=self.strides,
            padding=self.padding, dilation_rate=self.dilation_rate,
            data_format=self.data_format)
        if self.use_bias:
            shape = (1, 1, 1, -1) if self.data_format == "channels_last" else (1, -1, 1, 1)
            outputs = outputs + tf.reshape(self.bias, shape)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


def _batch_norm(affine, name):
    return SkippableBatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, center=affine,
                              scale=affine, name=name)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _check_stride(stride):
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride!r}.")


def _check_dilation(dilation, stride):
    _check_positive_int("dilation", dilation)
    if dilation > 1 and stride > 1:
        raise ValueError(f"dilation={dilation} needs stride 1 (a dilated backbone replaces "
                         f"strides by dilation), got stride {stride}.")


@keras.saving.register_keras_serializable(package="datanas")
class Subsample(keras.layers.Layer):
    """Keeps every `stride`-th row and column (output size ceil(H/stride))."""

    def __init__(self, stride=2, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, inputs):
        return inputs[:, ::self.stride, ::self.stride, :]

    def compute_output_shape(self, input_shape):
        def reduce(size):
            return None if size is None else math.ceil(size / self.stride)
        return (input_shape[0], reduce(input_shape[1]), reduce(input_shape[2]),
                input_shape[3])

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


class OpChain(keras.layers.Layer):
    """A fixed chain of sub-layers built eagerly from the input shape.

    The chain is a LayerList, so every variable has a checkpoint path."""

    def _make_layers(self):
        raise NotImplementedError

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.chain:
            if not layer.built:
                layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.chain:
            if isinstance(layer, keras.layers.BatchNormalization):
                x = layer(x, training=training)
            else:
                x = layer(x)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.chain:
            shape = tuple(layer.compute_output_shape(shape))
        return shape


@keras.saving.register_keras_serializable(package="datanas")
class ReLUConvBN(OpChain):
    """ReLU -> Conv(k, stride) -> BN; used to preprocess cell inputs."""

    def __init__(self, channels, kernel_size=1, stride=1, affine=True, **kwargs):
        super().__init__(**kwargs)
        _check_positive_int("channels", channels)
        self.channels, self.kernel_size = channels, kernel_size
        self.stride, self.affine = stride, affine
        self.chain = LayerList(self._make_layers(), name="chain")

    def _make_layers(self):
        return [
            keras.layers.ReLU(),
            keras.layers.Conv2D(self.channels, self.kernel_size, strides=self.stride,
                                padding="same", use_bias=False),
            _batch_norm(self.affine, "bn"),
        ]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "kernel_size": self.kernel_size, "stride": self.stride,
                "affine": self.affine}


@keras.saving.register_keras_serializable(package="datanas")
class SepConv(OpChain):
    """Separable convolution applied twice (ReLU-SepConv-BN) x 2.

    `dilation` > 1 (stride 1 only) dilates both convolutions: a cell of a
    dense-prediction backbone after a reduction turned into dilation
    (``segmentation.py``); 1 is the DARTS op.
    """

    def __init__(self, channels, kernel_size, stride=1, affine=True, dilation=1, **kwargs):
        super().__init__(**kwargs)
        _check_positive_int("channels", channels)
        _check_stride(stride)
        _check_dilation(dilation, stride)
        self.channels, self.kernel_size = channels, kernel_size
        self.stride, self.affine, self.dilation = stride, affine, dilation
        self.chain = LayerList(self._make_layers(), name="chain")

    def _make_layers(self):
        return [
            keras.layers.ReLU(),
            SkippableSeparableConv2D(self.channels, self.kernel_size, strides=self.stride,
                                     dilation_rate=self.dilation, padding="same",
                                     use_bias=False),
            _batch_norm(self.affine, "bn1"),
            keras.layers.ReLU(),
            SkippableSeparableConv2D(self.channels, self.kernel_size, strides=1,
                                     dilation_rate=self.dilation, padding="same",
                                     use_bias=False),
            _batch_norm(self.affine, "bn2"),
        ]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "kernel_size": self.kernel_size, "stride": self.stride,
                "affine": self.affine, "dilation": self.dilation}


@keras.saving.register_keras_serializable(package="datanas")
class DilConv(OpChain):
    """ReLU -> dilated separable conv -> BN.

    Keras (like TF) rejects stride > 1 together with dilation > 1, so the
    stride-2 variant computes the dilated conv at stride 1 and keeps every
    second row/column, which is the same operator up to padding alignment.
    """

    def __init__(self, channels, kernel_size, stride=1, dilation=2, affine=True, **kwargs):
        super().__init__(**kwargs)
        _check_positive_int("channels", channels)
        _check_stride(stride)
        self.channels, self.kernel_size = channels, kernel_size
        self.stride, self.dilation, self.affine = stride, dilation, affine
        self.chain = LayerList(self._make_layers(), name="chain")

    def _make_layers(self):
        layers = [
            keras.layers.ReLU(),
            SkippableSeparableConv2D(self.channels, self.kernel_size, strides=1,
                                     dilation_rate=self.dilation, padding="same",
                                     use_bias=False),
        ]
        if self.stride > 1:
            layers.append(Subsample(self.stride))
        layers.append(_batch_norm(self.affine, "bn"))
        return layers

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "kernel_size": self.kernel_size, "stride": self.stride,
                "dilation": self.dilation, "affine": self.affine}


@keras.saving.register_keras_serializable(package="datanas")
class Pool(OpChain):
    """3x3 max or average pooling ('same' padding, padding not counted in
    averages), optionally followed by a non-affine BN (search mode)."""

    def __init__(self, kind, stride=1, with_bn=False, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("max", "avg"):
            raise ValueError(f"pool kind must be 'max' or 'avg', got {kind!r}.")
        _check_stride(stride)
        self.kind, self.stride, self.with_bn = kind, stride, with_bn
        self.chain = LayerList(self._make_layers(), name="chain")

    def _make_layers(self):
        pool_cls = keras.layers.MaxPooling2D if self.kind == "max" else keras.layers.AveragePooling2D
        layers = [pool_cls(3, strides=self.stride, padding="same")]
        if self.with_bn:
            layers.append(_batch_norm(False, "bn"))
        return layers

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "stride": self.stride,
                "with_bn": self.with_bn}


@keras.saving.register_keras_serializable(package="datanas")
class Identity(keras.layers.Layer):
    """skip_connect at stride 1."""

    def call(self, inputs, training=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="datanas")
class FactorizedReduce(keras.layers.Layer):
    """Halves H and W with two offset 1x1 stride-2 convs, concatenated.

    The second path sees the input shifted by one pixel (padded at the
    bottom/right), so both paths give ceil(H/2) x ceil(W/2) for odd sizes too.
    """

    def __init__(self, channels, affine=True, **kwargs):
        super().__init__(**kwargs)
        _check_positive_int("channels", channels)
        if channels % 2:
            raise ValueError(
                f"FactorizedReduce needs an even number of output channels, got {channels}.")
        self.channels, self.affine = channels, affine
        self.conv_a = keras.layers.Conv2D(channels // 2, 1, strides=2, padding="valid", use_bias=False)
        self.conv_b = keras.layers.Conv2D(channels // 2, 1, strides=2, padding="valid", use_bias=False)
        self.bn = _batch_norm(affine, "bn")

    def build(self, input_shape):
        self.conv_a.build(input_shape)
        self.conv_b.build(input_shape)
        out = self.compute_output_shape(input_shape)
        self.bn.build(out)
        self.built = True

    def call(self, inputs, training=None):
        x = tf.nn.relu(inputs)
        shifted = tf.pad(x[:, 1:, 1:, :], [[0, 0], [0, 1], [0, 1], [0, 0]])
        out = tf.concat([self.conv_a(x), self.conv_b(shifted)], axis=-1)
        return self.bn(out, training=training)

    def compute_output_shape(self, input_shape):
        def reduce(size):
            return None if size is None else math.ceil(size / 2)
        return (input_shape[0], reduce(input_shape[1]), reduce(input_shape[2]), self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "affine": self.affine}


def cell_input_preprocessing(channels, reduction_prev, affine):
    """The two layers bringing a cell's inputs (outputs of the two previous
    cells) to `channels` at the cell's resolution: a factorized reduction of
    the older input when the previous cell halved the resolution, else a 1x1
    ReLU-Conv-BN; always a 1x1 ReLU-Conv-BN of the newer input."""
    if reduction_prev:
        preprocess0 = FactorizedReduce(channels, affine=affine, name="preprocess0")
    else:
        preprocess0 = ReLUConvBN(channels, 1, 1, affine=affine, name="preprocess0")
    return preprocess0, ReLUConvBN(channels, 1, 1, affine=affine, name="preprocess1")


def build_conv_op(name, channels, stride, affine, search, dilation=1):
    """Creates the layer for primitive `name`; returns None for 'none'.

    Args:
      name: one of CONV_PRIMITIVES.
      channels: input = output channels of the op.
      stride: 1 (normal cell) or 2 (edges leaving the inputs of a reduction cell).
      affine: whether BNs learn scale/offset (False during search).
      search: adds the BN after pooling that DARTS-style search uses.
      dilation: rate multiplying every convolution's dilation (stride 1 only):
        sep_conv gets `dilation`, dil_conv `2 * dilation`; pooling and
        skip_connect are unchanged.  1 = the DARTS ops.
    """
    _check_stride(stride)
    _check_dilation(dilation, stride)
    if name == "none":
        return None
    if name == "max_pool_3x3":
        return Pool("max", stride, with_bn=search)
    if name == "avg_pool_3x3":
        return Pool("avg", stride, with_bn=search)
    if name == "skip_connect":
        return Identity() if stride == 1 else FactorizedReduce(channels, affine=affine)
    if name == "sep_conv_3x3":
        return SepConv(channels, 3, stride, affine=affine, dilation=dilation)
    if name == "sep_conv_5x5":
        return SepConv(channels, 5, stride, affine=affine, dilation=dilation)
    if name == "dil_conv_3x3":
        return DilConv(channels, 3, stride, 2 * dilation, affine=affine)
    if name == "dil_conv_5x5":
        return DilConv(channels, 5, stride, 2 * dilation, affine=affine)
    raise ValueError(f"unknown op {name!r}; allowed: {', '.join(CONV_PRIMITIVES)}.")
