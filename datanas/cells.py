"""Search cells: a DAG of MixedEdges (paper Section 2.1, Eq. 2-4).

A cell has two input nodes (outputs of the two previous cells, each
preprocessed to ``channels`` channels), ``num_nodes`` intermediate nodes, each
the sum of the edges from every earlier node, and an output that
concatenates the intermediate nodes.  In a reduction cell the edges leaving
the two inputs have stride 2.

The cell is called with one weight matrix per intermediate node: node ``j``
(0-based) gets ``[j + 2, K]`` weights, row ``i`` for the edge from node ``i``.
"""

import keras
import tensorflow as tf

from datanas.genotypes import CONV_PRIMITIVES
from datanas.layers.conv_ops import cell_input_preprocessing
from datanas.layers.mixed_edge import MixedEdge

__all__ = ["SearchCell"]


@keras.saving.register_keras_serializable(package="datanas")
class SearchCell(keras.layers.Layer):
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
    """

    def __init__(self, channels, reduction, reduction_prev, num_nodes=4,
                 primitives=CONV_PRIMITIVES, mode="sparse", **kwargs):
        super().__init__(**kwargs)
        self.channels, self.reduction, self.reduction_prev = channels, reduction, reduction_prev
        self.num_nodes, self.primitives, self.mode = num_nodes, tuple(primitives), mode
        self.preprocess0, self.preprocess1 = cell_input_preprocessing(channels, reduction_prev,
                                                                      affine=False)
        self.edges = []
        for node in range(num_nodes):
            row = []
            for source in range(node + 2):
                stride = 2 if reduction and source < 2 else 1
                row.append(MixedEdge(channels, stride, self.primitives, mode=mode,
                                     affine=False, search=True,
                                     name=f"edge_{source}_to_{node + 2}"))
            self.edges.append(row)

    def build(self, input_shape):
        shape0, shape1 = (tuple(s) for s in input_shape)
        self.preprocess0.build(shape0)
        self.preprocess1.build(shape1)
        node_shape = tuple(self.preprocess1.compute_output_shape(shape1))
        out_shape = tuple(self.edges[0][0].compute_output_shape(node_shape))
        for node, row in enumerate(self.edges):
            for source, edge in enumerate(row):
                edge.build(node_shape if source < 2 else out_shape)
        self.built = True

    def call(self, inputs, node_weights, training=None):
        s0, s1 = inputs
        states = [self.preprocess0(s0, training=training), self.preprocess1(s1, training=training)]
        for node, row in enumerate(self.edges):
            weights = node_weights[node]
            states.append(tf.add_n([edge(states[source], weights[source], training=training)
                                    for source, edge in enumerate(row)]))
        return tf.concat(states[2:], axis=-1)

    def compute_output_shape(self, input_shape):
        shape1 = tuple(input_shape[1])
        out = self.edges[0][0].compute_output_shape(shape1[:3] + (self.channels,))
        return out[:3] + (self.num_nodes * self.channels,)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "reduction": self.reduction,
                "reduction_prev": self.reduction_prev, "num_nodes": self.num_nodes,
                "primitives": list(self.primitives), "mode": self.mode}
