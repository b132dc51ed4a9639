"""The supernet searched by DATA: stem, L search cells, classifier.

Architecture logits are their own variable set (``architecture_variables``),
separate from the network weights (``network_variables``).  Each cell kind
(normal, reduce) has one logit matrix per intermediate node, shaped
``[j + 2, K]`` for node ``j`` (row ``i`` = edge from node ``i``); every cell
of a kind shares them, as in DARTS.

How logits become edge weights (``weighting``):

* ``"egs"`` (DATA): binary codes sampled by the EnsembleGumbelSoftmax layer
  with ``num_samples`` = M.  ``egs_scope="edge"`` samples one code per edge
  (paper Eq. 4); ``egs_scope="node"`` samples one code over all
  (input, op) pairs entering a node (the authors' released derivation).
  With ``mode="sparse"`` only the ops whose bit is 1 are computed.
* ``"softmax"`` (DARTS): continuous softmax weights, all ops computed.

One code per cell kind is drawn per forward pass and shared by all cells of
that kind and by the whole batch, so a forward pass runs one child network.
"""

import keras
import tensorflow as tf

from datanas.cells import SearchCell
from datanas.genotypes import CELL_KINDS, CONV_PRIMITIVES
from datanas.layers.conv_ops import BN_EPSILON, BN_MOMENTUM
from datanas.layers.ensemble_gumbel_softmax import EnsembleGumbelSoftmax

__all__ = ["SearchNetwork", "EGS_SCOPES", "WEIGHTINGS", "reduction_cell_indices"]

EGS_SCOPES = ("edge", "node")
WEIGHTINGS = ("egs", "softmax")


def reduction_cell_indices(num_cells):
    """Cells at 1/3 and 2/3 of the depth are reduction cells (DARTS layout)."""
    return sorted({num_cells // 3, 2 * num_cells // 3})


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}.")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


@keras.saving.register_keras_serializable(package="datanas")
class SearchNetwork(keras.Model):
    """DARTS-style supernet whose cells are sampled with EGS.

    Args:
      num_classes: classifier outputs.
      init_channels: C, channels of the first cells (doubled at reductions).
      num_cells: L, number of stacked cells.
      num_nodes: intermediate nodes per cell.
      stem_multiplier: stem has ``stem_multiplier * C`` channels.
      primitives: candidate ops (the last logit axis follows this order).
      num_samples: M of the EGS estimator.
      egs_scope: "edge" or "node" (see module docstring).
      weighting: "egs" or "softmax".
      mode: "sparse" (skip ops with a zero weight) or "dense".
      temperature: initial EGS temperature.
      arch_init_scale: std of the normal init of the architecture logits.
      seed: seeds the logit initialisation and the EGS layer's own stream.
    """

    def __init__(self, num_classes, init_channels=16, num_cells=8, num_nodes=4,
                 stem_multiplier=3, primitives=CONV_PRIMITIVES, num_samples=4,
                 egs_scope="node", weighting="egs", mode="sparse", temperature=5.0,
                 arch_init_scale=1e-3, seed=None, **kwargs):
        super().__init__(**kwargs)
        _check_int("num_classes", num_classes, 2)
        _check_int("init_channels", init_channels, 2)
        if init_channels % 2:
            raise ValueError(
                f"init_channels must be even (factorized reductions split channels in two), got {init_channels}.")
        _check_int("num_cells", num_cells, 1)
        _check_int("num_nodes", num_nodes, 1)
        _check_int("stem_multiplier", stem_multiplier, 1)
        _check_choice("egs_scope", egs_scope, EGS_SCOPES)
        _check_choice("weighting", weighting, WEIGHTINGS)
        _check_choice("mode", mode, ("sparse", "dense"))
        if weighting == "softmax" and mode == "sparse":
            raise ValueError("weighting='softmax' gives every op a non-zero weight; use mode='dense'.")
        unknown = [p for p in primitives if p not in CONV_PRIMITIVES]
        if unknown:
            raise ValueError(f"unknown primitive(s) {unknown}; allowed: {', '.join(CONV_PRIMITIVES)}.")
        if len(set(primitives)) != len(primitives) or not [p for p in primitives if p != "none"]:
            raise ValueError(f"primitives {list(primitives)} must be distinct and include an op "
                             "other than 'none'.")
        self.num_classes, self.init_channels = num_classes, init_channels
        self.num_cells, self.num_nodes = num_cells, num_nodes
        self.stem_multiplier, self.primitives = stem_multiplier, tuple(primitives)
        self.num_samples, self.egs_scope = num_samples, egs_scope
        self.weighting, self.mode = weighting, mode
        self.arch_init_scale, self.seed = arch_init_scale, seed

        self.egs = EnsembleGumbelSoftmax(num_samples, temperature, seed=seed, name="egs")
        self.stem_conv = keras.layers.Conv2D(stem_multiplier * init_channels, 3, padding="same",
                                             use_bias=False, name="stem_conv")
        self.stem_bn = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                                       name="stem_bn")
        reductions = reduction_cell_indices(num_cells)
        channels, reduction_prev = init_channels, False
        self.cells = []
        for index in range(num_cells):
            reduction = index in reductions
            if reduction:
                channels *= 2
            self.cells.append(SearchCell(channels, reduction, reduction_prev, num_nodes,
                                         self.primitives, mode=mode, name=f"cell_{index}"))
            reduction_prev = reduction
        self.global_pool = keras.layers.GlobalAveragePooling2D(name="global_pool")
        self.classifier = keras.layers.Dense(num_classes, name="classifier")

        initializer = keras.initializers.RandomNormal(stddev=arch_init_scale, seed=seed)
        self.arch_logits = {}
        for kind in CELL_KINDS:
            self.arch_logits[kind] = [
                self.add_weight(shape=(node + 2, len(self.primitives)), initializer=initializer,
                                trainable=True, name=f"arch_{kind}_node{node + 2}")
                for node in range(num_nodes)]

    # -- variable sets -----------------------------------------------------
    @property
    def architecture_variables(self):
        """Architecture logits of both cell kinds (normal first)."""
        return [v for kind in CELL_KINDS for v in self.arch_logits[kind]]

    @property
    def network_variables(self):
        """Trainable network weights (everything but the architecture logits)."""
        arch_ids = {id(v) for v in self.architecture_variables}
        return [v for v in self.trainable_variables if id(v) not in arch_ids]

    # -- building ----------------------------------------------------------
    def build(self, input_shape):
        shape = tuple(input_shape)
        self.stem_conv.build(shape)
        shape = tuple(self.stem_conv.compute_output_shape(shape))
        self.stem_bn.build(shape)
        s0 = s1 = shape
        for cell in self.cells:
            cell.build((s0, s1))
            s0, s1 = s1, tuple(cell.compute_output_shape((s0, s1)))
        self.global_pool.build(s1)
        self.classifier.build((s1[0], s1[-1]))
        self.built = True

    # -- architecture weights ----------------------------------------------
    def edge_weights(self, stochastic, seed=None):
        """Per-kind lists of per-node weight matrices ``[j + 2, K]``.

        Args:
          stochastic: sample EGS codes (search) or use the deterministic
            EGS code (inclusion probability >= 0.5).  Ignored for softmax.
          seed: optional ``[2]`` int tensor making the sample a pure
            function of the seed (shared by all replicas of a step).
        """
        weights = {}
        for kind_index, kind in enumerate(CELL_KINDS):
            per_node = []
            for node, logits in enumerate(self.arch_logits[kind]):
                flat = self.egs_scope == "node"
                values = tf.reshape(logits, [-1]) if flat else tf.convert_to_tensor(logits)
                if self.weighting == "softmax":
                    out = tf.nn.softmax(values, axis=-1)
                elif stochastic:
                    node_seed = None
                    if seed is not None:
                        node_seed = tf.random.experimental.stateless_fold_in(
                            tf.cast(seed, tf.int64), kind_index * 1000 + node)
                    out = self.egs.sample(values, seed=node_seed)
                else:
                    out = self.egs.deterministic_code(values)
                per_node.append(tf.reshape(out, tf.shape(logits)) if flat else out)
            weights[kind] = per_node
        return weights

    def forward(self, images, weights, training=None):
        """Runs the supernet with the given per-node edge weights."""
        x = self.stem_bn(self.stem_conv(images), training=training)
        s0 = s1 = x
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell((s0, s1), weights[kind], training=training)
        return self.classifier(self.global_pool(s1))

    def call(self, inputs, training=None):
        return self.forward(inputs, self.edge_weights(stochastic=bool(training)), training=training)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "init_channels": self.init_channels, "num_cells": self.num_cells,
                "num_nodes": self.num_nodes, "stem_multiplier": self.stem_multiplier,
                "primitives": list(self.primitives), "num_samples": self.num_samples,
                "egs_scope": self.egs_scope, "weighting": self.weighting, "mode": self.mode,
                "temperature": float(self.egs.temperature.numpy()),
                "arch_init_scale": self.arch_init_scale, "seed": self.seed}
