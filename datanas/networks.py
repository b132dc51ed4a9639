"""Networks built from a genotype, for training a found cell from scratch.

* ``NetworkCIFAR``: stem, L cells with reductions at 1/3 and 2/3 depth, an
  auxiliary head after the 2/3 reduction, global pooling, classifier
  (paper Section 4.1: C=36, L=20 for CIFAR-10).
* ``NetworkImageNet``: the mobile setting (two stride-2 stems, 14 cells,
  C=48, auxiliary head), 224x224 input.

Every intermediate node sums *any number* of (op, input) pairs, as EGS
produces.  Drop-path (per-example, on every non-identity op) is controlled by
``model.drop_path_rate``, a variable the trainer ramps without retracing.

``model(images)`` returns the main logits only (what is exported);
``model.logits_and_auxiliary(images, training)`` also returns the auxiliary
logits (None when the head is disabled) for training.
"""

import keras
import tensorflow as tf

from datanas.genotypes import Genotype
from datanas.layers.conv_ops import (BN_EPSILON, BN_MOMENTUM, Identity, build_conv_op,
                                     cell_input_preprocessing)
from datanas.search_network import reduction_cell_indices

__all__ = ["GenotypeCell", "AuxiliaryHead", "NetworkCIFAR", "NetworkImageNet", "drop_path"]


def _as_genotype(genotype):
    if isinstance(genotype, Genotype):
        return genotype
    if isinstance(genotype, dict):
        return Genotype.from_dict(genotype)
    raise TypeError(f"genotype must be a Genotype or its dict form, got {type(genotype).__name__}.")


def drop_path(x, rate, seed_generator):
    """Zeroes whole examples with probability `rate`, rescaling the rest."""
    keep = 1.0 - rate
    shape = tf.stack([tf.shape(x)[0], 1, 1, 1])
    mask = tf.cast(keras.random.uniform(shape, seed=seed_generator) < keep, x.dtype)
    return x * mask / tf.cast(keep, x.dtype)


def _bn(name=None):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


@keras.saving.register_keras_serializable(package="datanas")
class GenotypeCell(keras.layers.Layer):
    """A fixed cell: node j = sum of op(state[input]) over its genotype pairs.

    Args:
      pairs: per intermediate node, a list of (op, input) pairs.
      concat: indices of the nodes concatenated into the output.
      channels: channels of every node.
      reduction / reduction_prev: as in the search cell.
    """

    def __init__(self, pairs, concat, channels, reduction, reduction_prev, **kwargs):
        super().__init__(**kwargs)
        self.pairs = [[(str(op), int(src)) for op, src in node] for node in pairs]
        self.concat = [int(i) for i in concat]
        self.channels, self.reduction, self.reduction_prev = channels, reduction, reduction_prev
        self.preprocess0, self.preprocess1 = cell_input_preprocessing(channels, reduction_prev,
                                                                      affine=True)
        self.node_ops = []
        for node, node_pairs in enumerate(self.pairs):
            ops = []
            for op, source in node_pairs:
                stride = 2 if reduction and source < 2 else 1
                ops.append(build_conv_op(op, channels, stride, affine=True, search=False))
            self.node_ops.append(ops)
        self.seed_generator = keras.random.SeedGenerator()

    def build(self, input_shape):
        shape0, shape1 = (tuple(s) for s in input_shape)
        self.preprocess0.build(shape0)
        self.preprocess1.build(shape1)
        node_shape = tuple(self.preprocess1.compute_output_shape(shape1))
        reduced = node_shape
        if self.reduction:
            reduced = (node_shape[0], None if node_shape[1] is None else -(-node_shape[1] // 2),
                       None if node_shape[2] is None else -(-node_shape[2] // 2), node_shape[3])
        for node_pairs, ops in zip(self.pairs, self.node_ops):
            for (op_name, source), op in zip(node_pairs, ops):
                op.build(node_shape if source < 2 else reduced)
        self.built = True

    def call(self, inputs, drop_rate=0.0, training=None):
        s0, s1 = inputs
        states = [self.preprocess0(s0, training=training), self.preprocess1(s1, training=training)]
        for node_pairs, ops in zip(self.pairs, self.node_ops):
            terms = []
            for (_, source), op in zip(node_pairs, ops):
                h = op(states[source], training=training)
                if training and not isinstance(op, Identity):
                    h = drop_path(h, drop_rate, self.seed_generator)
                terms.append(h)
            states.append(tf.add_n(terms) if len(terms) > 1 else terms[0])
        return tf.concat([states[i] for i in self.concat], axis=-1)

    def compute_output_shape(self, input_shape):
        shape1 = tuple(input_shape[1])
        height, width = shape1[1], shape1[2]
        if self.reduction:
            height = None if height is None else -(-height // 2)
            width = None if width is None else -(-width // 2)
        return (shape1[0], height, width, len(self.concat) * self.channels)

    def get_config(self):
        return {**super().get_config(), "pairs": [[list(p) for p in node] for node in self.pairs],
                "concat": self.concat, "channels": self.channels, "reduction": self.reduction,
                "reduction_prev": self.reduction_prev}


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
    """Shared cell stacking of the CIFAR and ImageNet networks."""

    def _init_common(self, genotype, num_classes, init_channels, layers, auxiliary,
                     reduction_prev_first):
        self.genotype = _as_genotype(genotype)
        for name, value, minimum in (("num_classes", num_classes, 2),
                                     ("init_channels", init_channels, 2), ("layers", layers, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
        if init_channels % 2:
            raise ValueError(f"init_channels must be even (factorized reductions split channels "
                             f"in two), got {init_channels}.")
        self.num_classes, self.init_channels = num_classes, init_channels
        self.layers_count, self.auxiliary = layers, auxiliary
        if len(self.genotype.normal) != len(self.genotype.reduce):
            raise ValueError("genotype normal and reduce cells must have the same number of nodes.")
        reductions = reduction_cell_indices(layers)
        self.auxiliary_after = reductions[-1]
        channels, reduction_prev = init_channels, reduction_prev_first
        self.cells = []
        for index in range(layers):
            reduction = index in reductions
            if reduction:
                channels *= 2
            kind = "reduce" if reduction else "normal"
            self.cells.append(GenotypeCell(self.genotype.cell(kind), self.genotype.concat(kind),
                                           channels, reduction, reduction_prev,
                                           name=f"cell_{index}"))
            reduction_prev = reduction
        self.global_pool = keras.layers.GlobalAveragePooling2D(name="global_pool")
        self.classifier = keras.layers.Dense(num_classes, name="classifier")
        self.drop_path_rate = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                              name="drop_path_rate")
        self.auxiliary_head = None

    def _build_cells(self, s0, s1):
        for index, cell in enumerate(self.cells):
            cell.build((s0, s1))
            s0, s1 = s1, tuple(cell.compute_output_shape((s0, s1)))
            if index == self.auxiliary_after and self.auxiliary_head is not None:
                self.auxiliary_head.build(s1)
        self.classifier.build((s1[0], s1[-1]))

    def _stem(self, images, training):
        raise NotImplementedError

    def logits_and_auxiliary(self, images, training=None):
        s0, s1 = self._stem(images, training)
        auxiliary = None
        rate = tf.convert_to_tensor(self.drop_path_rate)
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell((s0, s1), drop_rate=rate, training=training)
            if index == self.auxiliary_after and self.auxiliary_head is not None and training:
                auxiliary = self.auxiliary_head(s1, training=training)
        return self.classifier(self.global_pool(s1)), auxiliary

    def call(self, inputs, training=None):
        return self.logits_and_auxiliary(inputs, training=training)[0]

    def main_variables(self):
        """Weights that exist at inference time (auxiliary head excluded)."""
        aux = set() if self.auxiliary_head is None else {id(v) for v in self.auxiliary_head.weights}
        return [v for v in self.weights if id(v) not in aux and v is not self.drop_path_rate]

    def _common_config(self):
        return {"genotype": self.genotype.to_dict(), "num_classes": self.num_classes,
                "init_channels": self.init_channels, "layers": self.layers_count,
                "auxiliary": self.auxiliary}


@keras.saving.register_keras_serializable(package="datanas")
class NetworkCIFAR(_GenotypeNetwork):
    """CIFAR-style network (3x3 stem of ``stem_multiplier * C`` channels)."""

    def __init__(self, genotype, num_classes=10, init_channels=36, layers=20, auxiliary=True,
                 stem_multiplier=3, **kwargs):
        super().__init__(**kwargs)
        self.stem_multiplier = stem_multiplier
        self.stem_conv = keras.layers.Conv2D(stem_multiplier * init_channels, 3, padding="same",
                                             use_bias=False, name="stem_conv")
        self.stem_bn = _bn("stem_bn")
        self._init_common(genotype, num_classes, init_channels, layers, auxiliary, False)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHead(num_classes, pool_stride=3, name="auxiliary_head")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.stem_conv.build(shape)
        shape = tuple(self.stem_conv.compute_output_shape(shape))
        self.stem_bn.build(shape)
        self._build_cells(shape, shape)
        self.built = True

    def _stem(self, images, training):
        x = self.stem_bn(self.stem_conv(images), training=training)
        return x, x

    def get_config(self):
        return {**super().get_config(), **self._common_config(),
                "stem_multiplier": self.stem_multiplier}


@keras.saving.register_keras_serializable(package="datanas")
class NetworkImageNet(_GenotypeNetwork):
    """ImageNet mobile-setting network: two stride-2 stems then the cells."""

    def __init__(self, genotype, num_classes=1000, init_channels=48, layers=14, auxiliary=True,
                 **kwargs):
        super().__init__(**kwargs)
        c = init_channels
        self.stem0 = [keras.layers.Conv2D(c // 2, 3, strides=2, padding="same", use_bias=False),
                      _bn(), keras.layers.ReLU(),
                      keras.layers.Conv2D(c, 3, strides=2, padding="same", use_bias=False), _bn()]
        self.stem1 = [keras.layers.ReLU(),
                      keras.layers.Conv2D(c, 3, strides=2, padding="same", use_bias=False), _bn()]
        self._init_common(genotype, num_classes, init_channels, layers, auxiliary, True)
        if auxiliary:
            self.auxiliary_head = AuxiliaryHead(num_classes, pool_stride=2, name="auxiliary_head")

    @staticmethod
    def _build_chain(chain, shape):
        for layer in chain:
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    @staticmethod
    def _run_chain(chain, x, training):
        for layer in chain:
            x = layer(x, training=training) if isinstance(layer, keras.layers.BatchNormalization) \
                else layer(x)
        return x

    def build(self, input_shape):
        s0 = self._build_chain(self.stem0, tuple(input_shape))
        s1 = self._build_chain(self.stem1, s0)
        self._build_cells(s0, s1)
        self.built = True

    def _stem(self, images, training):
        s0 = self._run_chain(self.stem0, images, training)
        return s0, self._run_chain(self.stem1, s0, training)

    def get_config(self):
        return {**super().get_config(), **self._common_config()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
