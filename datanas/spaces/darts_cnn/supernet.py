"""The supernet searched by DATA: stem and L search cells (the body), then the task's head.

Architecture logits are their own variable set (``architecture_variables``),
separate from the network weights (``network_variables``).  Each cell kind
(normal, reduce) has one logit matrix per intermediate node, shaped
``[j + 2, K]`` for node ``j`` (row ``i`` = edge from node ``i``); every cell
of a kind shares them, as in DARTS.

How logits become edge weights (``weighting``):

* ``"egs"`` (DATA): binary codes sampled by the EnsembleGumbelSoftmax layer
  with ``num_samples`` = M.  ``egs_scope="edge"`` (default) samples one code
  per edge (paper Eq. 4, and the authors' ``gumbel_sample_weight``, one draw
  per row of the logits); ``egs_scope="node"`` samples one code over all
  (input, op) pairs entering a node (an option; the authors group a node's
  pairs only when deriving the cell).  DARTS and GDAS have one distribution
  per edge.  With ``mode="sparse"`` only the ops whose bit is 1 are trained;
  ``egs_gradient`` says whether undrawn ops are computed forward only
  (``"full"``, the authors' gradient) or not at all (``"sampled"``); see
  ``mixed_edge.py``.
  ``edge_combine="mean"`` (default) divides every edge's code by its number
  of non-``none`` ones, with the gradient through that division, so an edge
  outputs the mean of its selected ops (the authors' ``gumbel_sample``, and
  their ``genotype2weight`` for a given cell); ``"sum"`` adds them.
* ``"softmax"`` (DARTS): continuous softmax weights, all ops computed.

Resource-aware search (``cost_lambda`` < 1, EGS only): the estimator samples
from p = lam * softmax(logits) + (1 - lam) * l, l a fixed efficiency credit
per scope set with ``set_efficiency_credit`` (``estimators/efficiency.py``,
``costs.py``).  ``sampling_logits`` (log p) is what sampling, inference
codes, derivation and the probabilities file read.

Budgets (``set_budgets``): the expected cost of the final network built from
a sampled child -- fixed part plus each op's inclusion probability times its
cost -- enters the search loss as ``architecture_penalty()``, a hinge that
grows with the relative excess over the budget.

One code per cell kind is drawn per forward pass and shared by all cells of
that kind and by the whole batch, so a forward pass runs one child network.
"""

import keras
import tensorflow as tf

from datanas.core.heads import ClassificationHead
from datanas.estimators import estimator_class, inclusion_probabilities, make_estimator
from datanas.spaces.darts_cnn.backbone import (CifarStem, build_cell_stack, check_int,
                                               reduction_cell_indices, stack_cells)
from datanas.spaces.darts_cnn.cells import SearchCell
from datanas.spaces.darts_cnn.genotype import CELL_KINDS, CONV_PRIMITIVES, check_primitives
from datanas.spaces.darts_cnn.mixed_edge import EGS_GRADIENTS, SKIP_MECHANISMS
from datanas.spaces.resource_aware import ResourceAwareSampling

__all__ = ["SearchNetwork", "EGS_SCOPES", "EDGE_COMBINES", "EGS_GRADIENTS",
           "reduction_cell_indices", "node_sampling_seed", "combine_edge_code"]

EGS_SCOPES = ("edge", "node")
#: How an edge combines the ops its code selects (module docstring).
EDGE_COMBINES = ("mean", "sum")


def combine_edge_code(code, primitives, edge_combine):
    """`code` ``[inputs, K]`` with every row divided by its number of
    non-``none`` ones (at least 1) for ``edge_combine="mean"``; unchanged for
    ``"sum"``.  Differentiable: the division's gradient reaches the code."""
    _check_choice("edge_combine", edge_combine, EDGE_COMBINES)
    if edge_combine == "sum":
        return code
    mask = tf.constant([0.0 if name == "none" else 1.0 for name in primitives], code.dtype)
    count = tf.reduce_sum(code * mask, axis=-1, keepdims=True)
    return code / tf.maximum(count, tf.ones_like(count))


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}.")


def node_sampling_seed(seed, kind_index, node):
    """The stateless seed of one node's draw, folded from a step's ``[2]`` seed:
    every replica, and every tool re-drawing a step's child, gets the same code."""
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64),
                                                    kind_index * 1000 + node)


@keras.saving.register_keras_serializable(package="datanas")
class SearchNetwork(ResourceAwareSampling, keras.Model):
    """DARTS-style supernet whose cells are weighted by an estimator.

    Run eagerly, its edges call only the selected ops (host-driven search
    steps, ``supports_host_execution``).

    Args:
      num_classes: outputs of the default head, a ClassificationHead (give
        this or `head`).
      init_channels: C, channels of the first cells (doubled at reductions).
      num_cells: L, number of stacked cells.
      num_nodes: intermediate nodes per cell.
      stem_multiplier: stem has ``stem_multiplier * C`` channels.
      primitives: candidate ops (the last logit axis follows this order).
      num_samples: M of the EGS estimator.
      egs_scope: "edge" (default) or "node" (see module docstring).
      egs_gradient: "full" (default: undrawn ops forward only, every bit gets
        its gradient) or "sampled" (undrawn ops not computed).
      edge_combine: "mean" (default: an edge averages its selected ops) or
        "sum"; applies to EGS codes, not to DARTS' softmax.
      weighting: "egs" or "softmax".
      mode: "sparse" (skip ops with a zero weight) or "dense".
      skip: how sparse edges skip an op: "cond" (a ``tf.cond`` per op; the
        faster steady step, and what static-shape compilers such as TPUs
        need) or "examples" (run it on no example: faster to build, half the
        resident memory); see ``mixed_edge.py``.
      temperature: initial EGS temperature.
      arch_init_scale: std of the normal init of the architecture logits.
      seed: seeds the logit initialisation and the EGS layer's own stream.
      cost_lambda: lam of resource-aware sampling; 1.0 = the learned
        distribution only.  Below 1 the supernet holds one non-trainable
        credit matrix per node (uniform until ``set_efficiency_credit``).
      head: the Keras layer from the last cell's feature map to the
        outputs (``Task.build_head``); default a ClassificationHead of
        `num_classes`.  The stem and cells are the space's body; the head
        is the task's.
    """

    @property
    def supports_host_execution(self):
        """Sparse supernets step host-driven; dense mixing computes every op,
        which the compiled graph does 2.5x faster (README benchmark)."""
        return self.mode == "sparse"

    def __init__(self, num_classes=None, init_channels=16, num_cells=8, num_nodes=4,
                 stem_multiplier=3, primitives=CONV_PRIMITIVES, num_samples=4,
                 egs_scope="edge", weighting="egs", mode="sparse", temperature=5.0,
                 arch_init_scale=1e-3, seed=None, skip="cond", cost_lambda=1.0,
                 egs_gradient="full", edge_combine="mean", head=None, **kwargs):
        super().__init__(**kwargs)
        if (head is None) == (num_classes is None):
            raise ValueError("give the supernet either num_classes (a classification head) or "
                             f"a head layer, not {'both' if head is not None else 'neither'}.")
        if isinstance(head, dict):   # from get_config
            head = keras.saving.deserialize_keras_object(head)
        if head is None:
            check_int("num_classes", num_classes, 2)
            head = ClassificationHead(num_classes, name="head")
        elif not isinstance(head, keras.layers.Layer):
            raise TypeError(f"head must be a Keras layer, got {type(head).__name__}.")
        check_int("init_channels", init_channels, 2)
        if init_channels % 2:
            raise ValueError(f"init_channels must be even (factorized reductions split "
                             f"channels in two), got {init_channels}.")
        check_int("num_cells", num_cells, 3)
        check_int("num_nodes", num_nodes, 1)
        check_int("stem_multiplier", stem_multiplier, 1)
        _check_choice("egs_scope", egs_scope, EGS_SCOPES)
        binary_codes = estimator_class(weighting).binary_codes
        _check_choice("mode", mode, ("sparse", "dense"))
        _check_choice("skip", skip, SKIP_MECHANISMS)
        _check_choice("egs_gradient", egs_gradient, EGS_GRADIENTS)
        _check_choice("edge_combine", edge_combine, EDGE_COMBINES)
        self.skip, self.egs_gradient, self.edge_combine = skip, egs_gradient, edge_combine
        self._init_cost_lambda(cost_lambda, weighting)
        if not binary_codes and mode == "sparse":
            raise ValueError(f"weighting={weighting!r} gives every op a non-zero weight; "
                             "use mode='dense'.")
        self.primitives = check_primitives(primitives)
        self.num_classes = getattr(head, "num_classes", None)
        self.init_channels = init_channels
        self.num_cells, self.num_nodes = num_cells, num_nodes
        self.stem_multiplier = stem_multiplier
        self.num_samples, self.egs_scope = num_samples, egs_scope
        self.weighting, self.mode = weighting, mode
        self.arch_init_scale, self.seed = arch_init_scale, seed

        self.estimator = make_estimator(weighting, num_samples=num_samples,
                                        temperature=temperature, seed=seed, name="estimator")
        self.stem = CifarStem(stem_multiplier * init_channels, name="stem")
        self.cells = stack_cells(num_cells, init_channels, lambda index, channels, reduction,
                                 reduction_prev: SearchCell(
                                     channels, reduction, reduction_prev, num_nodes,
                                     self.primitives, mode=mode, skip=skip,
                                     gradient=egs_gradient, name=f"cell_{index}"))
        self.head = head

        initializer = keras.initializers.RandomNormal(stddev=arch_init_scale, seed=seed)
        self.arch_logits = {kind: [] for kind in CELL_KINDS}
        for kind in CELL_KINDS:
            for node in range(num_nodes):
                variable = self.add_weight(shape=(node + 2, len(self.primitives)),
                                           initializer=initializer, trainable=True,
                                           name=f"arch_{kind}_node{node + 2}")
                # An attribute, so checkpoints hold it under a stable name.
                setattr(self, f"arch_{kind}_node{node + 2}", variable)
                self.arch_logits[kind].append(variable)
        # Efficiency credits: constants of the run, saved in its checkpoints
        # (a measured latency credit must not change when a search resumes).
        self.credit = {kind: [] for kind in CELL_KINDS}
        if self.cost_lambda < 1.0:
            for kind in CELL_KINDS:
                for node in range(num_nodes):
                    self.credit[kind].append(self._add_credit(
                        f"credit_{kind}_node{node + 2}", (node + 2, len(self.primitives))))

    @property
    def egs(self):
        """The estimator layer (EnsembleGumbelSoftmax for weighting='egs')."""
        return self.estimator

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
        self.stem.build(tuple(input_shape))
        s0, s1 = self.stem.compute_output_shape(tuple(input_shape))
        last = build_cell_stack(self.cells, s0, s1)
        if not self.head.built:   # a head from a config may arrive built
            self.head.build(tuple(last))
        self.built = True

    # -- architecture weights ----------------------------------------------
    def set_budgets(self, budgets, weight=1.0):
        """Budgets on the final network: {metric: (limit, fixed cost, tables
        {kind: [array [node + 2, K]]})} (``costs.final_cost_tables``)."""
        if weight <= 0:
            raise ValueError(f"budget_weight must be > 0, got {weight!r}.")
        self.budget_weight = float(weight)
        self.budgets = {metric: (float(limit), float(fixed),
                                 {kind: [tf.constant(t, tf.float32) for t in tables[kind]]
                                  for kind in CELL_KINDS})
                        for metric, (limit, fixed, tables) in budgets.items()}

    def expected_final_cost(self, metric):
        """Expected cost of the final network of a sampled child (a
        differentiable function of the architecture logits)."""
        _, fixed, tables = self.budgets[metric]
        total = tf.constant(fixed, tf.float32)
        for kind in CELL_KINDS:
            for node, table in enumerate(tables[kind]):
                probs = inclusion_probabilities(self.sampling_logits(kind, node),
                                                self.num_samples)
                total += tf.reduce_sum(tf.reshape(probs, tf.shape(table)) * table)
        return total

    def architecture_penalty(self):
        """Sum over budgets of weight * max(0, expected cost / limit - 1);
        None without budgets."""
        budgets = getattr(self, "budgets", None)
        if not budgets:
            return None
        return tf.add_n([self.budget_weight * tf.nn.relu(self.expected_final_cost(metric) / limit
                                                         - 1.0)
                         for metric, (limit, _, _) in budgets.items()])

    def sampling_logits(self, kind, node):
        """Logits the estimator samples from for one node, flattened to
        ``[(node + 2) * K]`` for the node scope: the learned logits, or
        log p of the resource-aware mixture."""
        credit = self.credit[kind][node] if self.cost_lambda < 1.0 else None
        return self._scope_sampling_logits(self.arch_logits[kind][node], credit)

    def edge_weights(self, stochastic, seed=None):
        """Per-kind lists of per-node weight matrices ``[j + 2, K]``.

        Args:
          stochastic: sample codes (search) or use the estimator's
            deterministic code (EGS: inclusion probability >= 0.5; softmax:
            the softmax itself).
          seed: optional ``[2]`` int tensor making the sample a pure
            function of the seed (shared by all replicas of a step).
        """
        weights = {}
        for kind_index, kind in enumerate(CELL_KINDS):
            per_node = []
            for node, logits in enumerate(self.arch_logits[kind]):
                flat = self.egs_scope == "node"
                values = self.sampling_logits(kind, node)
                if stochastic:
                    node_seed = None if seed is None else node_sampling_seed(seed, kind_index,
                                                                             node)
                    out = self.estimator.sample(values, seed=node_seed)
                else:
                    out = self.estimator.deterministic_code(values)
                out = tf.reshape(out, tf.shape(logits)) if flat else out
                if self.estimator.binary_codes:
                    out = combine_edge_code(out, self.primitives, self.edge_combine)
                per_node.append(out)
            weights[kind] = per_node
        return weights

    def forward(self, images, weights, training=None):
        """Runs the supernet with the given per-node edge weights."""
        s0, s1 = self.stem(images, training=training)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell((s0, s1), weights[kind], training=training)
        return self.head(s1)

    def call(self, inputs, training=None):
        return self.forward(inputs, self.edge_weights(stochastic=bool(training)), training=training)

    def get_config(self):
        temperature = getattr(self.estimator, "temperature", None)
        return {**super().get_config(), "num_classes": None,
                "head": keras.saving.serialize_keras_object(self.head),
                "init_channels": self.init_channels, "num_cells": self.num_cells,
                "num_nodes": self.num_nodes, "stem_multiplier": self.stem_multiplier,
                "primitives": list(self.primitives), "num_samples": self.num_samples,
                "egs_scope": self.egs_scope, "weighting": self.weighting, "mode": self.mode,
                "temperature": 5.0 if temperature is None else float(temperature.numpy()),
                "arch_init_scale": self.arch_init_scale, "seed": self.seed, "skip": self.skip,
                "cost_lambda": self.cost_lambda, "egs_gradient": self.egs_gradient,
                "edge_combine": self.edge_combine}
