"""Recurrent cells of the DARTS/DATA language-model space (paper Section 4.2).

One time step of either cell:

* ``s_0 = h + sigmoid(c_0) * (tanh(g_0) - h)`` with ``[c_0, g_0] = [x, h] W_0``
  (the first node: a linear map of the input and the previous state, tanh,
  with the highway form of ENAS/DARTS);
* node ``i`` has ONE linear map ``W_i`` [units, 2 units], applied to each of
  its inputs (DARTS ``rnn/model_search.py``: ``self._Ws[i]`` multiplies every
  predecessor state of node i; ``rnn/model.py`` DARTSCell: one ``_Ws[i]`` per
  step).  An (activation ``f``, input ``j``) pair of node ``i`` computes
  ``s_j + sigmoid(c) * (f(g) - s_j)`` with ``[c, g] = s_j W_i``;
* node ``i`` of a genotype (DARTS keeps one pair per node, DATA's EGS may
  keep several) averages the pairs of each input, then averages over its
  inputs: the search's per-edge mean of the selected activations
  (``edge_combine="mean"``, below) summed over the inputs, up to the
  node's batch-norm scale, which the found cell has no BN to remove (a sum
  of highway terms grows without bound); with one pair per node it is that
  pair.  ``h_t`` is the mean of the output nodes.

``RecurrentCell`` computes a genotype; it is a Keras RNN cell
(``state_size``, ``call(inputs, states)``) usable in ``keras.layers.RNN``.
``SearchRecurrentCell`` weights every (node, input, activation) by edge
weights given per step (EGS codes, already divided by each edge's count of
selected activations by the search model, or softmax mixing).  With sparse
codes (``mode="sparse"``) what an undrawn pair (weight 0) computes is
``egs_gradient``:

* ``"full"`` (default; the DATA authors' gradient): computed forward only,
  as ``weight * stop_gradient(highway)``: its value is 0 and its weight gets
  the straight-through gradient ``<dL/dy, highway>``, while ``W_i`` and the
  input state get none from it.  An edge none of whose activations is drawn
  still multiplies its input by ``W_i``, under ``stop_gradient``.  Cheap
  here: the activations are elementwise on the node map's output.
* ``"sampled"``: not computed (a ``tf.cond`` per edge skips its matmul, one
  per activation its highway term), so its weight gets no gradient.

During search every node is batch-normalised by ONE batch norm without
scale/offset (DARTS' search cell: ``self.bn = nn.BatchNorm1d(nhid,
affine=False)``, applied to s_0 and to every node): each node uses its own
batch moments when training, and all nodes share one pair of moving
statistics, moved once per sequence toward the mean moments of its nodes
and steps.

Variational dropout masks (``x_mask``, ``h_mask``, fixed over time) are
passed in by the language model; weights use DARTS' uniform(-0.04, 0.04)
initialisation.
"""

import keras
import tensorflow as tf

from datanas.spaces.darts_rnn.genotype import RecurrentGenotype, check_rnn_primitives

__all__ = ["RecurrentCell", "SearchRecurrentCell", "ACTIVATIONS", "INIT_RANGE", "EGS_GRADIENTS"]

INIT_RANGE = 0.04
ACTIVATIONS = {"tanh": tf.tanh, "relu": tf.nn.relu, "sigmoid": tf.sigmoid,
               "identity": tf.identity}
#: What a sparse search cell computes for an undrawn pair (module docstring).
EGS_GRADIENTS = ("full", "sampled")


def _uniform(seed=None):
    return keras.initializers.RandomUniform(-INIT_RANGE, INIT_RANGE, seed=seed)


def _highway(state, projected, activation):
    gate, candidate = tf.split(projected, 2, axis=-1)
    return state + tf.sigmoid(gate) * (ACTIVATIONS[activation](candidate) - state)


def _masked(value, mask):
    return value if mask is None else value * mask


def _forward_only_unless(flag, compute):
    """compute(), differentiable where `flag` holds, under stop_gradient
    elsewhere (a tf.cond: no backward pass runs through the second branch)."""
    return tf.cond(flag, compute, lambda: tf.stop_gradient(compute()))


class _CellBase(keras.layers.Layer):
    """W_0, the first node and one map per intermediate node, shared by both cells."""

    def __init__(self, units, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive integer, got {units!r}.")
        self.units, self.seed = units, seed
        self.state_size = units
        self.output_size = units

    def _build_maps(self, input_dim, num_nodes):
        self.w_init = self.add_weight(shape=(input_dim + self.units, 2 * self.units),
                                      initializer=_uniform(self.seed), name="w_init")
        for node in range(1, num_nodes + 1):
            name = f"w_node{node}"
            seed = None if self.seed is None else self.seed + node
            # An attribute: a stable checkpoint name.
            setattr(self, name, self.add_weight(shape=(self.units, 2 * self.units),
                                                initializer=_uniform(seed), name=name))

    def node_map(self, node):
        """W_i of intermediate node `node` (1-based), applied to each of its inputs."""
        return getattr(self, f"w_node{node}")

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
        self._build_maps(int(input_shape[-1]), self.genotype.num_nodes)
        self.built = True

    def step(self, x, h, x_mask=None, h_mask=None, training=False):
        """h_t from x_t and h_{t-1} (masks only when training)."""
        if not training:
            x_mask = h_mask = None
        states = [self.first_node(x, h, x_mask, h_mask)]
        for position, pairs in enumerate(self.genotype.recurrent):
            weight_map = self.node_map(position + 1)
            means = []
            for source in sorted({s for _, s in pairs}):
                projected = tf.matmul(_masked(states[source], h_mask), weight_map)
                names = [name for name, s in pairs if s == source]
                means.append(tf.add_n([_highway(states[source], projected, name)
                                       for name in names]) / len(names))
            # Mean over inputs of each input's mean (module docstring).
            states.append(tf.add_n(means) / len(means))
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
      mode: "sparse" (binary-derived weights; zero pairs per ``egs_gradient``)
        or "dense" (every pair computed and weighted).
      egs_gradient: "full" (default) or "sampled" (module docstring).
      seed: optional initialiser seed.
    """

    def __init__(self, units, num_nodes=12, primitives=("none", "tanh", "relu", "sigmoid",
                                                        "identity"),
                 mode="sparse", seed=None, egs_gradient="full", **kwargs):
        super().__init__(units, seed=seed, **kwargs)
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
            raise ValueError(f"num_nodes must be a positive integer, got {num_nodes!r}.")
        if mode not in ("sparse", "dense"):
            raise ValueError(f"mode must be 'sparse' or 'dense'; got {mode!r}.")
        if egs_gradient not in EGS_GRADIENTS:
            raise ValueError(f"egs_gradient must be one of {', '.join(EGS_GRADIENTS)}; "
                             f"got {egs_gradient!r}.")
        self.num_nodes, self.mode, self.egs_gradient = num_nodes, mode, egs_gradient
        self.primitives = check_rnn_primitives(primitives)

    def build(self, input_shape):
        self._build_maps(int(input_shape[-1]), self.num_nodes)
        # One batch norm (no scale/offset) for s_0 and every node: one pair
        # of moving statistics.
        self.moving_mean = self.add_weight(shape=(self.units,), initializer="zeros",
                                           trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=(self.units,), initializer="ones",
                                               trainable=False, name="moving_variance")
        self.built = True

    def _normalize(self, value, training, moments):
        if training:
            mean, variance = tf.nn.moments(value, axes=[0])
            moments.append(tf.stack([mean, variance]))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        return tf.nn.batch_normalization(value, mean, variance, None, None, 1e-5)

    def _edge(self, state, mask, weight_map, codes):
        """Sum over activations of code_k * highway_k for one (node, input) edge."""
        sparse = self.mode == "sparse"
        full = sparse and self.egs_gradient == "full"
        drawn = [codes[k] != 0 for k, name in enumerate(self.primitives) if name != "none"]

        def project():
            return tf.matmul(_masked(state, mask), weight_map)

        if full:   # the map runs for every edge; differentiably where a pair is drawn
            projected = _forward_only_unless(tf.reduce_any(tf.stack(drawn)), project)
        else:
            projected = project()
        terms = []
        for k, name in enumerate(self.primitives):
            if name == "none":
                continue
            weight = codes[k]

            def highway(name=name):
                return _highway(state, projected, name)

            if full:
                term = _forward_only_unless(weight != 0, highway)
            elif sparse:
                term = tf.cond(weight != 0, highway, lambda: tf.zeros_like(state))
            else:
                term = highway()
            terms.append(tf.cast(weight, term.dtype) * term)
        return tf.add_n(terms)

    def step(self, x, h, edge_weights, x_mask=None, h_mask=None, training=False):
        """(h_t, moments): moments is [nodes + 1, 2, units] batch (mean, variance)
        of every node when training, else None."""
        if not training:
            x_mask = h_mask = None
        moments = []
        states = [self._normalize(self.first_node(x, h, x_mask, h_mask), training, moments)]
        skip_edges = self.mode == "sparse" and self.egs_gradient == "sampled"
        activations = [k for k, name in enumerate(self.primitives) if name != "none"]
        for position in range(self.num_nodes):
            node = position + 1
            weights = edge_weights[position]          # [node, K]
            total = tf.zeros_like(states[0])
            for source in range(node):
                codes = weights[source]
                args = (states[source], h_mask, self.node_map(node), codes)
                if skip_edges:
                    active = tf.reduce_any(tf.stack([codes[k] != 0 for k in activations]))
                    total += tf.cond(active, lambda a=args: self._edge(*a),
                                     lambda: tf.zeros_like(states[0]))
                else:
                    total += self._edge(*args)
            states.append(self._normalize(total, training, moments))
        output = tf.add_n(states[1:]) / self.num_nodes
        return output, (tf.stack(moments) if training else None)

    def update_moving_statistics(self, moments, momentum=0.1):
        """Moves the shared statistics toward the mean moments of a sequence
        ([T, nodes + 1, 2, units]: every step and node)."""
        mean_moments = tf.reduce_mean(moments, axis=[0, 1])
        self.moving_mean.assign((1 - momentum) * self.moving_mean + momentum * mean_moments[0])
        self.moving_variance.assign((1 - momentum) * self.moving_variance
                                    + momentum * mean_moments[1])

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_nodes": self.num_nodes,
                "primitives": list(self.primitives), "mode": self.mode, "seed": self.seed,
                "egs_gradient": self.egs_gradient}
