"""Networks built from a genotype, for training a found cell from scratch.

* ``NetworkCIFAR``: stem, L cells with reductions at 1/3 and 2/3 depth, an
  auxiliary head after the 2/3 reduction, global pooling, classifier
  (paper Section 4.1: C=36, L=20 for CIFAR-10).
* ``NetworkImageNet``: the mobile setting (two stride-2 stems, 14 cells,
  C=48, auxiliary head), 224x224 input.

Every intermediate node sums *any number* of (op, input) pairs, as EGS
produces.  Drop-path (per-example, on every non-identity op) is controlled by
``model.drop_path_rate``, a variable the trainer ramps without retracing.
Stems and the cell stack are shared with the supernet (``backbone.py``),
the cells with the search cells (``cells.py``).

``model(images)`` returns the main logits only (what is exported);
``model.logits_and_auxiliary(images, training)`` also returns the auxiliary
logits (None when the head is disabled) for training.

The stem and cells are the space's body.  What sits on the last cell is the
task's: ``head=`` takes any Keras layer from that feature map to the
outputs (``Task.build_head``); without one the network ends in global
average pooling and a Dense classifier of ``num_classes`` logits, stored as
they always were (``global_pool``, ``classifier``) so earlier checkpoints
and ``.keras`` files still load.
"""

import keras
import tensorflow as tf

from datanas.spaces.darts_cnn.backbone import (CifarStem, ImageNetStem, batch_norm,
                                               build_cell_stack, check_int,
                                               reduction_cell_indices, stack_cells)
from datanas.spaces.darts_cnn.cells import GenotypeCell, drop_path
from datanas.spaces.darts_cnn.genotype import Genotype

__all__ = ["GenotypeCell", "AuxiliaryHead", "NetworkCIFAR", "NetworkImageNet", "drop_path",
           "checked_network_genotype"]


def _as_genotype(genotype):
    if isinstance(genotype, Genotype):
        return genotype
    if isinstance(genotype, dict):
        return Genotype.from_dict(genotype)
    raise TypeError(f"genotype must be a Genotype or its dict form, got {type(genotype).__name__}.")


def checked_network_genotype(genotype, num_classes, init_channels, layers):
    """The Genotype of a network of `layers` cells and `init_channels`
    channels; refuses arguments no genotype network can be built with."""
    genotype = _as_genotype(genotype)
    check_int("num_classes", num_classes, 2)
    check_int("init_channels", init_channels, 2)
    check_int("layers", layers, 3)
    if init_channels % 2:
        raise ValueError(f"init_channels must be even (factorized reductions split channels "
                         f"in two), got {init_channels}.")
    if len(genotype.normal) != len(genotype.reduce):
        raise ValueError("genotype normal and reduce cells must have the same number of nodes.")
    return genotype


_bn = batch_norm


@keras.saving.register_keras_serializable(package="datanas")
class AuxiliaryHead(keras.layers.Layer):
    """Auxiliary classifier (ReLU, 5x5 avg-pool, 1x1 conv 128, 2x2 conv 768, FC).

    'same' padding keeps it valid for small feature maps (7x7 Fashion-MNIST,
    8x8 CIFAR, 14x14 ImageNet); the pooled map is globally averaged.
    """

    def __init__(self, num_classes, pool_stride=3, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.pool_stride = num_classes, pool_stride
        self.pool = keras.layers.AveragePooling2D(5, strides=pool_stride, padding="same")
        self.conv1 = keras.layers.Conv2D(128, 1, use_bias=False)
        self.bn1 = _bn()
        self.conv2 = keras.layers.Conv2D(768, 2, padding="same", use_bias=False)
        self.bn2 = _bn()
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.classifier = keras.layers.Dense(num_classes)

    def build(self, input_shape):
        shape = tuple(self.pool.compute_output_shape(tuple(input_shape)))
        self.conv1.build(shape)
        shape = tuple(self.conv1.compute_output_shape(shape))
        self.bn1.build(shape)
        self.conv2.build(shape)
        shape = tuple(self.conv2.compute_output_shape(shape))
        self.bn2.build(shape)
        self.classifier.build((shape[0], shape[-1]))
        self.built = True

    def call(self, inputs, training=None):
        x = self.pool(tf.nn.relu(inputs))
        x = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        x = tf.nn.relu(self.bn2(self.conv2(x), training=training))
        return self.classifier(self.gap(x))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "pool_stride": self.pool_stride}


class _GenotypeNetwork(keras.Model):
    """Stem, cells of a genotype, auxiliary head, classifier."""

    def _init_network(self, genotype, num_classes, init_channels, layers, auxiliary, stem,
                      aux_pool_stride, reduction_prev_first, head):
        self.genotype = checked_network_genotype(genotype, num_classes, init_channels, layers)
        if isinstance(head, dict):   # from get_config
            head = keras.saving.deserialize_keras_object(head)
        if head is not None and not isinstance(head, keras.layers.Layer):
            raise TypeError(f"head must be a Keras layer, got {type(head).__name__}.")
        self.head = head
        self.num_classes, self.init_channels = num_classes, init_channels
        self.layers_count, self.auxiliary = layers, auxiliary
        self.auxiliary_after = reduction_cell_indices(layers)[-1]
        self.stem = stem

        def make_cell(index, channels, reduction, reduction_prev):
            kind = "reduce" if reduction else "normal"
            return GenotypeCell(self.genotype.cell(kind), self.genotype.concat(kind), channels,
                                reduction, reduction_prev, name=f"cell_{index}")

        self.cells = stack_cells(layers, init_channels, make_cell, reduction_prev_first)
        if head is None:   # the classification default, under its original names
            self.global_pool = keras.layers.GlobalAveragePooling2D(name="global_pool")
            self.classifier = keras.layers.Dense(num_classes, name="classifier")
        self.drop_path_rate = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                              name="drop_path_rate")
        self.auxiliary_head = (AuxiliaryHead(num_classes, pool_stride=aux_pool_stride,
                                             name="auxiliary_head") if auxiliary else None)

    def build(self, input_shape):
        self.stem.build(tuple(input_shape))
        s0, s1 = self.stem.compute_output_shape(tuple(input_shape))

        def after_cell(index, shape):
            if index == self.auxiliary_after and self.auxiliary_head is not None:
                self.auxiliary_head.build(shape)

        last = build_cell_stack(self.cells, s0, s1, after_cell)
        if self.head is None:
            self.classifier.build((last[0], last[-1]))
        elif not self.head.built:   # a head from a config may arrive built
            self.head.build(tuple(last))
        self.built = True

    def logits_and_auxiliary(self, images, training=None):
        s0, s1 = self.stem(images, training=training)
        auxiliary = None
        rate = tf.convert_to_tensor(self.drop_path_rate)
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell((s0, s1), drop_rate=rate, training=training)
            if index == self.auxiliary_after and self.auxiliary_head is not None and training:
                auxiliary = self.auxiliary_head(s1, training=training)
        if self.head is not None:
            return self.head(s1), auxiliary
        return self.classifier(self.global_pool(s1)), auxiliary

    def call(self, inputs, training=None):
        return self.logits_and_auxiliary(inputs, training=training)[0]

    def main_variables(self):
        """Weights that exist at inference time (auxiliary head excluded)."""
        aux = set() if self.auxiliary_head is None else {id(v) for v in self.auxiliary_head.weights}
        return [v for v in self.weights if id(v) not in aux and v is not self.drop_path_rate]

    def get_config(self):
        return {**super().get_config(), "genotype": self.genotype.to_dict(),
                "num_classes": self.num_classes, "init_channels": self.init_channels,
                "layers": self.layers_count, "auxiliary": self.auxiliary,
                "head": (None if self.head is None
                         else keras.saving.serialize_keras_object(self.head))}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="datanas")
class NetworkCIFAR(_GenotypeNetwork):
    """CIFAR-style network (3x3 stem of ``stem_multiplier * C`` channels).

    ``stem_stride=2`` makes the stem halve the resolution (CifarStem).
    """

    def __init__(self, genotype, num_classes=10, init_channels=36, layers=20, auxiliary=True,
                 stem_multiplier=3, stem_stride=1, head=None, **kwargs):
        super().__init__(**kwargs)
        self.stem_multiplier, self.stem_stride = stem_multiplier, stem_stride
        self._init_network(genotype, num_classes, init_channels, layers, auxiliary,
                           CifarStem(stem_multiplier * init_channels, stride=stem_stride,
                                     name="stem"),
                           aux_pool_stride=3, reduction_prev_first=False, head=head)

    def get_config(self):
        return {**super().get_config(), "stem_multiplier": self.stem_multiplier,
                "stem_stride": self.stem_stride}


@keras.saving.register_keras_serializable(package="datanas")
class NetworkImageNet(_GenotypeNetwork):
    """ImageNet mobile-setting network: two stride-2 stems then the cells."""

    def __init__(self, genotype, num_classes=1000, init_channels=48, layers=14, auxiliary=True,
                 head=None, **kwargs):
        super().__init__(**kwargs)
        self._init_network(genotype, num_classes, init_channels, layers, auxiliary,
                           ImageNetStem(init_channels, name="stem"), aux_pool_stride=2,
                           reduction_prev_first=True, head=head)
