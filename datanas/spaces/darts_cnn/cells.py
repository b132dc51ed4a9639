"""Cells of the convolutional space: the searched DAG and the fixed one.

A cell has two input nodes (outputs of the two previous cells, each
preprocessed to ``channels`` channels), intermediate nodes that each SUM a
list of terms ``layer(state[source])``, and an output that concatenates some
of the nodes.  In a reduction cell the terms leaving the two inputs have
stride 2.  Both cell kinds share that skeleton (``DagCell``); they differ in
what a term is:

* ``SearchCell`` (paper Section 2.1, Eq. 2-4): node ``j`` has one MixedEdge
  per earlier node and is called with a weight matrix ``[j + 2, K]`` (row
  ``i`` = edge from node ``i``).  Every intermediate node is concatenated.
* ``GenotypeCell``: node ``j`` has exactly the (op, input) pairs of a
  genotype (any number, as EGS produces), with drop-path on every
  non-identity op during training; the genotype's ``concat`` nodes form the
  output.

Terms are kept in nested ``LayerList`` s, so checkpoints see every variable.
"""

import keras
import tensorflow as tf

from datanas.core.layer_functions import call_layer
from datanas.core.tracking import LayerList, SeedStateTracking
from datanas.spaces.darts_cnn.genotype import CONV_PRIMITIVES
from datanas.spaces.darts_cnn.mixed_edge import MixedEdge
from datanas.spaces.darts_cnn.ops import Identity, build_conv_op, cell_input_preprocessing

__all__ = ["DagCell", "SearchCell", "GenotypeCell", "drop_path"]


def drop_path(x, rate, seed_generator):
    """Zeroes whole examples with probability `rate`, rescaling the rest.

    The coin flips are drawn and compared in float32 whatever `x`'s dtype (a
    mixed-precision policy passes `rate` in bfloat16/float16)."""
    keep = 1.0 - tf.cast(rate, tf.float32)
    shape = tf.stack([tf.shape(x)[0], 1, 1, 1])
    mask = tf.cast(keras.random.uniform(shape, seed=seed_generator) < keep, x.dtype)
    return x * mask / tf.cast(keep, x.dtype)


def _halved(size):
    return None if size is None else -(-size // 2)


class DagCell(keras.layers.Layer):
    """Preprocessing, node sums over (source, layer) terms, concatenation.

    Subclasses call ``_init_dag(...)`` with the terms of every node and
    implement ``_term(node, position, layer, x, context, training)``.
    """

    def _init_dag(self, channels, reduction, reduction_prev, sources, layers, concat, affine):
        self.channels, self.reduction, self.reduction_prev = channels, reduction, reduction_prev
        self.preprocess0, self.preprocess1 = cell_input_preprocessing(channels, reduction_prev,
                                                                      affine=affine)
        self.node_sources = [[int(s) for s in node] for node in sources]
        self.node_terms = LayerList([LayerList(node, name=f"node_{index + 2}")
                                     for index, node in enumerate(layers)], name="nodes")
        self.concat = [int(i) for i in concat]

    def build(self, input_shape):
        shape0, shape1 = (tuple(s) for s in input_shape)
        self.preprocess0.build(shape0)
        self.preprocess1.build(shape1)
        node_shape = tuple(self.preprocess1.compute_output_shape(shape1))
        inner = node_shape
        if self.reduction:
            inner = (node_shape[0], _halved(node_shape[1]), _halved(node_shape[2]),
                     node_shape[3])
        for sources, terms in zip(self.node_sources, self.node_terms):
            for source, layer in zip(sources, terms):
                if not layer.built:
                    layer.build(node_shape if source < 2 else inner)
        self.built = True

    def _term(self, node, position, layer, x, context, training):
        raise NotImplementedError

    def _run_dag(self, inputs, context, training):
        s0, s1 = inputs
        states = [call_layer(self.preprocess0, s0, training),
                  call_layer(self.preprocess1, s1, training)]
        for node, (sources, terms) in enumerate(zip(self.node_sources, self.node_terms)):
            outputs = [self._term(node, position, layer, states[source], context, training)
                       for position, (source, layer) in enumerate(zip(sources, terms))]
            states.append(tf.add_n(outputs) if len(outputs) > 1 else outputs[0])
        return tf.concat([states[i] for i in self.concat], axis=-1)

    def compute_output_shape(self, input_shape):
        shape1 = tuple(input_shape[1])
        height, width = shape1[1], shape1[2]
        if self.reduction:
            height, width = _halved(height), _halved(width)
        return (shape1[0], height, width, len(self.concat) * self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "reduction": self.reduction,
                "reduction_prev": self.reduction_prev}


@keras.saving.register_keras_serializable(package="datanas")
class SearchCell(DagCell):
    """One normal or reduction cell of the supernet.

    Args:
      channels: channels of every node inside the cell (output has
        ``num_nodes * channels``).
      reduction: whether this cell halves the resolution.
      reduction_prev: whether the previous cell did (input 0 is then twice
        the resolution of input 1 and gets a factorized reduction).
      num_nodes: number of intermediate nodes (4 in the paper).
      primitives: candidate op names; the order defines the code layout.
      mode: "sparse" or "dense" MixedEdges.
      skip: how sparse edges skip unselected ops ("examples" or "cond").
      gradient: what sparse edges compute for an undrawn op: "full"
        (forward only, its bit gets its gradient) or "sampled" (nothing).

    Call: ``cell((s0, s1), node_weights, training)`` with one ``[j + 2, K]``
    weight matrix per intermediate node.
    """

    def __init__(self, channels, reduction, reduction_prev, num_nodes=4,
                 primitives=CONV_PRIMITIVES, mode="sparse", skip="cond", gradient="full",
                 **kwargs):
        super().__init__(**kwargs)
        self.num_nodes, self.primitives, self.mode = num_nodes, tuple(primitives), mode
        self.skip, self.gradient = skip, gradient
        sources = [list(range(node + 2)) for node in range(num_nodes)]
        layers = [[MixedEdge(channels, 2 if reduction and source < 2 else 1, self.primitives,
                             mode=mode, affine=False, search=True, skip=skip,
                             gradient=gradient, name=f"edge_{source}_to_{node + 2}")
                   for source in node_sources]
                  for node, node_sources in enumerate(sources)]
        self._init_dag(channels, reduction, reduction_prev, sources, layers,
                       range(2, num_nodes + 2), affine=False)

    @property
    def edges(self):
        """Per node, the MixedEdges from every earlier node."""
        return [list(node) for node in self.node_terms]

    def _term(self, node, position, layer, x, node_weights, training):
        return layer(x, node_weights[node][position], training=training)

    def call(self, inputs, node_weights, training=None):
        return self._run_dag(inputs, node_weights, training)

    def get_config(self):
        return {**super().get_config(), "num_nodes": self.num_nodes,
                "primitives": list(self.primitives), "mode": self.mode, "skip": self.skip,
                "gradient": self.gradient}


@keras.saving.register_keras_serializable(package="datanas")
class GenotypeCell(SeedStateTracking, DagCell):
    """A fixed cell: node j = sum of op(state[input]) over its genotype pairs.

    Args:
      pairs: per intermediate node, a list of (op, input) pairs.
      concat: indices of the nodes concatenated into the output.
      channels: channels of every node.
      reduction / reduction_prev: as in the search cell.
      dilation: rate of every convolution of the cell (``build_conv_op``);
        > 1 only in a non-reducing cell, where a dense-prediction backbone
        replaced a reduction by dilation.  1 = the DARTS cell.

    Call: ``cell((s0, s1), drop_rate, training)``.
    """

    def __init__(self, pairs, concat, channels, reduction, reduction_prev, dilation=1,
                 **kwargs):
        super().__init__(**kwargs)
        self.pairs = [[(str(op), int(src)) for op, src in node] for node in pairs]
        self.dilation = dilation
        layers = [[build_conv_op(op, channels, 2 if reduction and source < 2 else 1,
                                 affine=True, search=False, dilation=dilation)
                   for op, source in node]
                  for node in self.pairs]
        self._init_dag(channels, reduction, reduction_prev,
                       [[source for _, source in node] for node in self.pairs], layers, concat,
                       affine=True)
        self.seed_generator = keras.random.SeedGenerator()

    def _term(self, node, position, layer, x, drop_rate, training):
        h = layer(x, training=training)
        if training and not isinstance(layer, Identity):
            h = drop_path(h, drop_rate, self.seed_generator)
        return h

    def call(self, inputs, drop_rate=0.0, training=None):
        return self._run_dag(inputs, drop_rate, training)

    def get_config(self):
        return {**super().get_config(), "pairs": [[list(p) for p in node] for node in self.pairs],
                "concat": self.concat, "dilation": self.dilation}
