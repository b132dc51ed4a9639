"""DeepLab-v3 of a found genotype: dilated cell backbone, ASPP, per-pixel logits.

DATA (paper Section 4.3, Table 6) uses the network searched on CIFAR-10 as
the feature extractor of DeepLab v3 (Chen et al. 2017).  Here:

* Backbone: the ImageNet mobile-setting network of the genotype
  (``NetworkImageNet``'s two stride-2 stems, then L cells with reductions at
  1/3 and 2/3 depth, channels doubled at each) without its classifier.  The
  stems reach stride 8 and the reduction cells would reach 16 and 32; as in
  DeepLab, a reduction beyond the ``output_stride`` (16, or 8) runs at
  stride 1 and every later convolution is dilated by the stride it replaced
  (the replaced cell itself keeps the rate it had, later cells get twice
  it: DeepLab's ``stack_blocks_dense``).  A replaced reduction cell still
  uses the genotype's *reduce* cell and doubles the channels, so the
  backbone has exactly the parameters of ``NetworkImageNet``'s; its
  stride-2 ops become their stride-1 forms (a factorized-reduce skip
  becomes the identity), and ``sep_conv``/``dil_conv`` get dilations
  ``r``/``2r``.  Pooling ops are not dilated.
* Head (DeepLab v3 ASPP): a 1x1 conv and three 3x3 atrous convs with rates
  6/12/18 at output stride 16 (12/24/36 at 8), an image-level branch
  (global average, 1x1 conv, broadcast back), each conv + BN + ReLU with
  ``aspp_channels`` (256) filters; concatenated and projected by a 1x1
  conv + BN + ReLU; a 1x1 classifier gives ``num_classes`` logits, upsampled
  bilinearly to the input size.

``model(images)`` on images of any size gives logits of the same height
and width.  The model follows the trainers' genotype-network protocol:
``logits_and_auxiliary`` (no auxiliary head: always None), a
``drop_path_rate`` variable (drop-path is off in DeepLab's recipe unless the
trainer ramps it) and ``num_classes``.
"""

import collections

import keras
import tensorflow as tf

from datanas.spaces.darts_cnn.backbone import (ImageNetStem, batch_norm, build_cell_stack,
                                               check_int, reduction_cell_indices, stack_cells)
from datanas.spaces.darts_cnn.cells import GenotypeCell
from datanas.spaces.darts_cnn.networks import checked_network_genotype
from datanas.spaces.darts_cnn.ops import OpChain
from datanas.core.tracking import LayerList

__all__ = ["OUTPUT_STRIDES", "STEM_STRIDE", "ASPP_RATES", "CellPlan", "dilated_cell_plan",
           "ConvBNReLU", "ASPP", "NetworkDeepLabV3"]

#: Output strides a DeepLab backbone may run at (ratio of input to feature size).
OUTPUT_STRIDES = (8, 16)
#: Stride after the ImageNet stems (the first cell's input).
STEM_STRIDE = 8
#: ASPP atrous rates at output stride 16 (doubled at 8), DeepLab v3.
ASPP_RATES = (6, 12, 18)


#: How one backbone cell runs: genotype cell `kind` ("normal"/"reduce"),
#: whether it halves the resolution, its dilation, whether its predecessor halved.
CellPlan = collections.namedtuple("CellPlan", ["kind", "strided", "dilation", "reduction_prev"])


def _check_output_stride(output_stride):
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {', '.join(map(str, OUTPUT_STRIDES))}, "
                         f"got {output_stride!r}.")


def dilated_cell_plan(num_cells, output_stride):
    """How each of `num_cells` cells runs at `output_stride`.

    Returns a list of CellPlan: the genotype cell `kind` ("normal" or
    "reduce", DARTS layout), whether it halves the resolution (`strided`),
    the `dilation` of its convolutions, and whether its predecessor halved
    the resolution (`reduction_prev`; true for the first cell, whose two
    inputs are the stems at strides 4 and 8).
    """
    check_int("num_cells", num_cells, 3)
    _check_output_stride(output_stride)
    reductions = reduction_cell_indices(num_cells)
    stride, rate, previous_strided, plan = STEM_STRIDE, 1, True, []
    for index in range(num_cells):
        kind = "reduce" if index in reductions else "normal"
        strided = kind == "reduce" and stride < output_stride
        plan.append(CellPlan(kind, strided, rate, previous_strided))
        if kind == "reduce":
            if strided:
                stride *= 2
            else:
                rate *= 2
        previous_strided = strided
    return plan


@keras.saving.register_keras_serializable(package="datanas")
class ConvBNReLU(OpChain):
    """Conv (k x k, dilation `rate`, no bias) -> BN -> ReLU (DeepLab's unit)."""

    def __init__(self, channels, kernel_size=1, rate=1, **kwargs):
        super().__init__(**kwargs)
        check_int("channels", channels, 1)
        check_int("kernel_size", kernel_size, 1)
        check_int("rate", rate, 1)
        self.channels, self.kernel_size, self.rate = channels, kernel_size, rate
        self.chain = LayerList([
            keras.layers.Conv2D(channels, kernel_size, dilation_rate=rate, padding="same",
                                use_bias=False, name="conv"),
            batch_norm("bn"), keras.layers.ReLU()], name="chain")

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "kernel_size": self.kernel_size, "rate": self.rate}


@keras.saving.register_keras_serializable(package="datanas")
class ASPP(keras.layers.Layer):
    """Atrous spatial pyramid pooling of DeepLab v3.

    Args:
      channels: filters of every branch and of the projection (256).
      rates: atrous rates of the 3x3 branches (6, 12, 18 at output stride 16).
    """

    def __init__(self, channels=256, rates=ASPP_RATES, **kwargs):
        super().__init__(**kwargs)
        check_int("channels", channels, 1)
        self.channels, self.rates = channels, tuple(int(r) for r in rates)
        if not self.rates:
            raise ValueError("ASPP needs at least one atrous rate.")
        self.branches = LayerList(
            [ConvBNReLU(channels, 1, name="branch_1x1")]
            + [ConvBNReLU(channels, 3, rate, name=f"branch_rate_{rate}") for rate in self.rates],
            name="branches")
        self.image_pooling = ConvBNReLU(channels, 1, name="image_pooling")
        self.projection = ConvBNReLU(channels, 1, name="projection")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for branch in self.branches:
            branch.build(shape)
        self.image_pooling.build((shape[0], 1, 1, shape[-1]))
        self.projection.build(shape[:-1] + ((len(self.rates) + 2) * self.channels,))
        self.built = True

    def call(self, inputs, training=None):
        outputs = [branch(inputs, training=training) for branch in self.branches]
        pooled = self.image_pooling(tf.reduce_mean(inputs, axis=[1, 2], keepdims=True),
                                    training=training)
        size = tf.shape(inputs)
        outputs.append(tf.broadcast_to(pooled, tf.stack([size[0], size[1], size[2],
                                                         self.channels])))
        return self.projection(tf.concat(outputs, axis=-1), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.channels,)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "rates": list(self.rates)}


@keras.saving.register_keras_serializable(package="datanas")
class NetworkDeepLabV3(keras.Model):
    """DeepLab v3 with a genotype's cells as backbone (module docstring).

    Args:
      genotype: Genotype or its dict form (normal and reduce cells).
      num_classes: classes of the per-pixel logits (21 for PASCAL VOC).
      init_channels, layers: the backbone's C and L (ImageNet mobile: 48, 14).
      output_stride: 16 (default) or 8.
      aspp_channels: filters of the ASPP branches and projection (256).
    """

    def __init__(self, genotype, num_classes=21, init_channels=48, layers=14, output_stride=16,
                 aspp_channels=256, **kwargs):
        super().__init__(**kwargs)
        self.genotype = checked_network_genotype(genotype, num_classes, init_channels, layers)
        self.num_classes, self.init_channels = num_classes, init_channels
        self.layers_count, self.output_stride = layers, output_stride
        self.aspp_channels = aspp_channels
        self.plan = dilated_cell_plan(layers, output_stride)
        self.stem = ImageNetStem(init_channels, name="stem")

        def make_cell(index, channels, reduction, reduction_prev):
            del reduction, reduction_prev   # the plan's: strides replaced by dilation
            kind, strided, dilation, previous_strided = self.plan[index]
            return GenotypeCell(self.genotype.cell(kind), self.genotype.concat(kind), channels,
                                strided, previous_strided, dilation=dilation,
                                name=f"cell_{index}")

        self.cells = stack_cells(layers, init_channels, make_cell, reduction_prev_first=True)
        scale = 16 // output_stride
        self.aspp = ASPP(aspp_channels, tuple(rate * scale for rate in ASPP_RATES), name="aspp")
        self.classifier = keras.layers.Conv2D(num_classes, 1, name="classifier")
        self.drop_path_rate = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                              name="drop_path_rate")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.stem.build(input_shape)
        s0, s1 = self.stem.compute_output_shape(input_shape)
        features = build_cell_stack(self.cells, s0, s1)
        self.aspp.build(features)
        self.classifier.build(self.aspp.compute_output_shape(features))
        self.built = True

    def features(self, images, training=None):
        """Backbone output at 1/output_stride of the input size."""
        s0, s1 = self.stem(images, training=training)
        rate = tf.convert_to_tensor(self.drop_path_rate)
        for cell in self.cells:
            s0, s1 = s1, cell((s0, s1), drop_rate=rate, training=training)
        return s1

    def logits_and_auxiliary(self, images, training=None):
        x = self.aspp(self.features(images, training=training), training=training)
        logits = self.classifier(x)
        size = tf.shape(images)[1:3]
        return tf.image.resize(logits, size, method="bilinear"), None

    def call(self, inputs, training=None):
        return self.logits_and_auxiliary(inputs, training=training)[0]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.num_classes,)

    def main_variables(self):
        """Weights of the network (all of them: there is no auxiliary head)."""
        return [v for v in self.weights if v is not self.drop_path_rate]

    def get_config(self):
        return {**super().get_config(), "genotype": self.genotype.to_dict(),
                "num_classes": self.num_classes, "init_channels": self.init_channels,
                "layers": self.layers_count, "output_stride": self.output_stride,
                "aspp_channels": self.aspp_channels}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
