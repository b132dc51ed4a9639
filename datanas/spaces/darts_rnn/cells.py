"""Recurrent cells of the DARTS/DATA language-model space (paper Section 4.2).

One time step of either cell:

* ``s_0 = h + sigmoid(c_0) * (tanh(g_0) - h)`` with ``[c_0, g_0] = [x, h] W_0``
  (the first node: a linear map of the input and the previous state, tanh,
  with the highway form of ENAS/DARTS);
* an (activation ``f``, input ``j``) pair of node ``i`` computes
  ``s_j + sigmoid(c) * (f(g) - s_j)`` with ``[c, g] = s_j W_{i,j}``: every
  (node, input) edge has its own linear map, shared by the activations on
  that edge;
* node ``i`` of a genotype is the MEAN of its pairs (a sum of several
  highway terms grows without bound once batch normalisation is off; with
  one pair per node, as in DARTS, it is that pair); in the search cell it is
  the code-weighted sum, batch-normalised, so the scale does not matter;
  ``h_t`` is the mean of the output nodes.

``RecurrentCell`` computes a genotype; it is a Keras RNN cell
(``state_size``, ``call(inputs, states)``) usable in ``keras.layers.RNN``.
``SearchRecurrentCell`` weights every (node, input, activation) by edge
weights given per step (binary EGS codes or softmax mixing); with binary
codes only the sampled pairs run (a ``tf.cond`` per edge skips its linear
map, one per activation skips the highway term).  During search each node
is batch-normalised (no scale/offset, as DARTS' search cell); the batch
moments of a sequence are returned so the caller updates the moving
statistics once per sequence instead of once per time step.

Variational dropout masks (``x_mask``, ``h_mask``, fixed over time) are
passed in by the language model; weights use DARTS' uniform(-0.04, 0.04)
initialisation.
"""

import keras
import tensorflow as tf

from datanas.spaces.darts_rnn.genotype import RecurrentGenotype, check_rnn_primitives

__all__ = ["RecurrentCell", "SearchRecurrentCell", "ACTIVATIONS", "INIT_RANGE"]

INIT_RANGE = 0.04
ACTIVATIONS = {"tanh": tf.tanh, "relu": tf.nn.relu, "sigmoid": tf.sigmoid,
               "identity": tf.identity}


def _uniform(seed=None):
    return keras.initializers.RandomUniform(-INIT_RANGE, INIT_RANGE, seed=seed)


def _highway(state, projected, activation):
    gate, candidate = tf.split(projected, 2, axis=-1)
    return state + tf.sigmoid(gate) * (ACTIVATIONS[activation](candidate) - state)


def _masked(value, mask):
    return value if mask is None else value * mask


class _CellBase(keras.layers.Layer):
    """W_0 and the first node, shared by both cells."""

    def __init__(self, units, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive integer, got {units!r}.")
        self.units, self.seed = units, seed
        self.state_size = units
        self.output_size = units

    def _build_init(self, input_dim):
        self.w_init = self.add_weight(shape=(input_dim + self.units, 2 * self.units),
                                      initializer=_uniform(self.seed), name="w_init")

    def _edge_weight(self, node, source, index):
        name = f"w_node{node}_from{source}"
        seed = None if self.seed is None else self.seed + 1 + index
        variable = self.add_weight(shape=(self.units, 2 * self.units),
                                   initializer=_uniform(seed), name=name)
        setattr(self, name, variable)   # an attribute: a stable checkpoint name
        return variable

    def edge_map(self, node, source):
        """W of the (node, input) edge."""
        return getattr(self, f"w_node{node}_from{source}")

    def first_node(self, x, h, x_mask, h_mask):
        joined = tf.concat([_masked(x, x_mask), _masked(h, h_mask)], axis=-1)
        return _highway(h, tf.matmul(joined, self.w_init), "tanh")


@keras.saving.register_keras_serializable(package="datanas")
class RecurrentCell(_CellBase):
    """The cell of a RecurrentGenotype (a Keras RNN cell).

    Args:
      genotype: RecurrentGenotype or its dict form.
      units: hidden size (= state size = output size).
      seed: optional initialiser seed.
    """

    def __init__(self, genotype, units, seed=None, **kwargs):
        super().__init__(units, seed=seed, **kwargs)
        if isinstance(genotype, dict):
            genotype = RecurrentGenotype.from_dict(genotype)
        if not isinstance(genotype, RecurrentGenotype):
            raise TypeError(f"genotype must be a RecurrentGenotype or its dict, got "
                            f"{type(genotype).__name__}.")
        self.genotype = genotype

    def build(self, input_shape):
        input_dim = int(input_shape[-1])
        self._build_init(input_dim)
        for index, (node, source) in enumerate(self.genotype.edges()):
            self._edge_weight(node, source, index)
        self.built = True

    def step(self, x, h, x_mask=None, h_mask=None, training=False):
        """h_t from x_t and h_{t-1} (masks only when training)."""
        if not training:
            x_mask = h_mask = None
        states = [self.first_node(x, h, x_mask, h_mask)]
        for position, pairs in enumerate(self.genotype.recurrent):
            node = position + 1
            projected = {source: tf.matmul(_masked(states[source], h_mask),
                                           self.edge_map(node, source))
                         for source in sorted({s for _, s in pairs})}
            # The mean of the pairs: each highway term lies between its input
            # and the activation, so their mean stays bounded without BN.
            states.append(tf.add_n([_highway(states[source], projected[source], name)
                                    for name, source in pairs]) / len(pairs))
        return tf.add_n([states[i] for i in self.genotype.concat]) / len(self.genotype.concat)

    def call(self, inputs, states, training=None):
        h = states[0] if isinstance(states, (list, tuple)) else states
        output = self.step(inputs, h, training=False)
        return output, [output]

    def get_config(self):
        return {**super().get_config(), "genotype": self.genotype.to_dict(),
                "units": self.units, "seed": self.seed}


@keras.saving.register_keras_serializable(package="datanas")
class SearchRecurrentCell(_CellBase):
    """The searched cell: all (node, input, activation) choices, weighted.

    Args:
      units: hidden size.
      num_nodes: intermediate nodes after s_0 (DATA: 12, DARTS: 8).
      primitives: candidate activations (last axis of the edge weights).
      mode: "sparse" (binary weights; zero pairs are skipped) or "dense".
      seed: optional initialiser seed.
    """

    def __init__(self, units, num_nodes=12, primitives=("none", "tanh", "relu", "sigmoid",
                                                        "identity"),
                 mode="sparse", seed=None, **kwargs):
        super().__init__(units, seed=seed, **kwargs)
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
            raise ValueError(f"num_nodes must be a positive integer, got {num_nodes!r}.")
        if mode not in ("sparse", "dense"):
            raise ValueError(f"mode must be 'sparse' or 'dense'; got {mode!r}.")
        self.num_nodes, self.mode = num_nodes, mode
        self.primitives = check_rnn_primitives(primitives)

    def build(self, input_shape):
        self._build_init(int(input_shape[-1]))
        index = 0
        for node in range(1, self.num_nodes + 1):
            for source in range(node):
                self._edge_weight(node, source, index)
                index += 1
        # Per-node batch-norm moving statistics (no scale/offset), s_0 included.
        self.moving_mean = self.add_weight(shape=(self.num_nodes + 1, self.units),
                                           initializer="zeros", trainable=False,
                                           name="moving_mean")
        self.moving_variance = self.add_weight(shape=(self.num_nodes + 1, self.units),
                                               initializer="ones", trainable=False,
                                               name="moving_variance")
        self.built = True

    def _normalize(self, value, node, training, moments):
        if training:
            mean, variance = tf.nn.moments(value, axes=[0])
            moments.append(tf.stack([mean, variance]))
        else:
            mean, variance = self.moving_mean[node], self.moving_variance[node]
        return tf.nn.batch_normalization(value, mean, variance, None, None, 1e-5)

    def _edge(self, state, mask, weight_map, codes):
        """Sum over activations of code_k * highway_k for one (node, input) edge."""
        projected = tf.matmul(_masked(state, mask), weight_map)
        terms = []
        for k, name in enumerate(self.primitives):
            if name == "none":
                continue
            weight = codes[k]
            if self.mode == "sparse":
                term = tf.cond(weight > 0, lambda n=name: _highway(state, projected, n),
                               lambda: tf.zeros_like(state))
            else:
                term = _highway(state, projected, name)
            terms.append(tf.cast(weight, term.dtype) * term)
        return tf.add_n(terms)

    def step(self, x, h, edge_weights, x_mask=None, h_mask=None, training=False):
        """(h_t, moments): moments is [nodes + 1, 2, units] batch (mean, variance)
        of every node when training, else None."""
        if not training:
            x_mask = h_mask = None
        moments = []
        states = [self._normalize(self.first_node(x, h, x_mask, h_mask), 0, training,
                                  moments)]
        none_index = self.primitives.index("none") if "none" in self.primitives else None
        for position in range(self.num_nodes):
            node = position + 1
            weights = edge_weights[position]          # [node, K]
            total = tf.zeros_like(states[0])
            for source in range(node):
                codes = weights[source]
                args = (states[source], h_mask, self.edge_map(node, source), codes)
                if self.mode == "sparse":
                    active = tf.reduce_any(tf.stack([codes[k] > 0 for k in range(len(
                        self.primitives)) if k != none_index]))
                    total += tf.cond(active, lambda a=args: self._edge(*a),
                                     lambda: tf.zeros_like(states[0]))
                else:
                    total += self._edge(*args)
            states.append(self._normalize(total, node, training, moments))
        output = tf.add_n(states[1:]) / self.num_nodes
        return output, (tf.stack(moments) if training else None)

    def update_moving_statistics(self, moments, momentum=0.1):
        """Moves the statistics toward the mean moments of a sequence ([T, nodes+1, 2, units])."""
        mean_moments = tf.reduce_mean(moments, axis=0)
        self.moving_mean.assign((1 - momentum) * self.moving_mean + momentum * mean_moments[:, 0])
        self.moving_variance.assign((1 - momentum) * self.moving_variance
                                    + momentum * mean_moments[:, 1])

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_nodes": self.num_nodes,
                "primitives": list(self.primitives), "mode": self.mode, "seed": self.seed}
