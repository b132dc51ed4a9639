"""What each (input, activation) choice of the recurrent cell costs.

The recurrent cell's choices (``cells.py``): node i has one linear map
``W_i`` [units, 2 units] (DARTS), multiplied by each input ``s_j`` the node
takes; an (activation f, input j) pair computes the highway term
``s_j + sigmoid(c) * (f(g) - s_j)`` with ``[c, g] = s_j W_i``.  The product
``s_j W_i`` belongs to the *edge* (i, j) and is shared by every activation
chosen on it; the highway term belongs to the pair.  Costs of one cell:

    cell = fixed + (output nodes) * output + (edges with a pair) * map + (pairs) * pair

* ``madds``: multiply-adds of one token (one row of the batch), counted
  like the trainers' model statistics (the TF profiler's float operations
  / 2): map = 2 units^2 (the edge's matmul) + units / 2 (its share of the
  node's mean over its inputs: J inputs are J - 1 adds and a division);
  pair = 2 units (subtract, multiply and add of the highway term, plus its
  share of its edge's mean: the mean of n pairs is n - 1 adds and a
  division); fixed = W_0's matmul and the first node's highway term; output
  = units / 2 (the mean over the output nodes, h_t).  Activations (tanh,
  sigmoid, ...) are not counted.
* ``latency``: median seconds on the current device of ``LATENCY_BATCH``
  rows (shared with the conv space), over ``LATENCY_CHAIN`` chained steps
  (each step's output is the next step's input, so nothing is cached),
  divided by the chain: map = the matmul (and the split of its output);
  an activation's own term = (map + its highway term) - map, at least 0.
  Measured, so it varies slightly between runs; the search's checkpoint
  keeps the credit derived from the first measurement.  fixed and output
  are not measured (0).
* ``params`` is refused (``check_recurrent_cost``): every cell of N nodes
  has W_0 and N node maps whatever its choices (a genotype's node has at
  least one pair), so no choice changes the parameters.

``none`` costs nothing (no matmul runs for an edge whose only bits are none).

The per-choice table ``cost_tables`` (one ``[inputs, K]`` matrix per node,
in the layout of the architecture logits) charges every non-none activation
the WHOLE map of its edge plus its own term: what that activation costs when
it is the only one on its edge (an activation alone needs the matmul).  The
efficiency credit is computed from this table.  It over-counts when several
activations share an edge; ``expected_child_cost`` and ``genotype_cost``
do not: they charge a map once per edge that has at least one pair (the
probability of that, for a sampled child).  Every edge has the same shape,
so every non-none entry of a node's table has the same madds: the credit
then favours ``none`` (fewer pairs, fewer matmuls), not one activation over
another; latency also separates the activations.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from datanas.spaces.darts_rnn.cells import _highway
from datanas.spaces.node_rules import inclusion_probabilities, selection_probabilities
from datanas.spaces.resource_aware import (COST_METRICS, LATENCY_BATCH, median_seconds,
                                           scope_credit_table)

__all__ = ["COST_METRICS", "RECURRENT_COST_METRICS", "check_recurrent_cost", "LATENCY_CHAIN", "CellCosts", "cell_costs", "cost_tables",
           "scope_credit", "expected_child_cost", "genotype_cost", "cell_cost"]

#: The metrics a recurrent cell's choices change (module docstring).
RECURRENT_COST_METRICS = tuple(m for m in COST_METRICS if m != "params")


def check_recurrent_cost(metric):
    """ValueError (one line) for a cost metric the recurrent choices do not change."""
    if metric == "params":
        raise ValueError("cost='params': every recurrent cell of N nodes has the same "
                         "parameters (W_0 and one map per node, as in DARTS), so no choice "
                         f"changes them; use one of {', '.join(RECURRENT_COST_METRICS)}.")
    if metric not in (None, "none") and metric not in RECURRENT_COST_METRICS:
        raise ValueError(f"cost metric must be one of {', '.join(RECURRENT_COST_METRICS)}; "
                         f"got {metric!r}.")


#: Chained cell steps per latency measurement (one call's overhead is shared out).
LATENCY_CHAIN = 10


@dataclasses.dataclass(frozen=True)
class CellCosts:
    """Cost terms of a recurrent cell of `units` units (module docstring).

    map: one edge's linear map; own: {activation: its own term} (non-none
    activations); fixed: what every cell costs (W_0, first node); output:
    per output node (the mean giving h_t).
    """
    metric: str
    units: int
    map: float
    own: dict
    fixed: float
    output: float = 0.0

    def choice_cost(self, activation):
        """Table entry of one (input, activation) choice: map + own; none: 0."""
        return 0.0 if activation == "none" else self.map + self.own[activation]


def _latency_terms(units, activations, seed=0):
    state = tf.random.stateless_uniform((LATENCY_BATCH, units), seed=[seed, 1])
    weight = tf.random.stateless_uniform((units, 2 * units), seed=[seed, 2], minval=-0.04,
                                         maxval=0.04)

    def chained(step):
        def run(s, w):
            for _ in range(LATENCY_CHAIN):
                s = step(s, w)
            return s
        return tf.function(run)

    def map_only(s, w):
        return tf.split(tf.matmul(s, w), 2, axis=-1)[1]

    map_time = median_seconds(chained(map_only), state, weight) / LATENCY_CHAIN
    own = {}
    for name in activations:
        total = median_seconds(chained(lambda s, w, n=name: _highway(s, tf.matmul(s, w), n)),
                               state, weight) / LATENCY_CHAIN
        own[name] = max(total - map_time, 0.0)
    return map_time, own


def cell_costs(units, primitives, metric, input_dim=None):
    """CellCosts of a cell of `units` units with the activations of `primitives`."""
    check_recurrent_cost(metric)
    input_dim = units if input_dim is None else input_dim
    activations = [p for p in primitives if p != "none"]
    if metric == "madds":
        return CellCosts(metric, units, float(2 * units * units + 0.5 * units),
                         {name: float(2 * units) for name in activations},
                         float((input_dim + units) * 2 * units + 1.5 * units),
                         0.5 * units)
    map_time, own = _latency_terms(units, activations)
    return CellCosts(metric, units, map_time, own, 0.0)


def cost_tables(terms, primitives, num_nodes):
    """[array [i + 1, K]] per node at list position i: the cost of each
    (input, activation) choice (``CellCosts.choice_cost``)."""
    row = np.array([terms.choice_cost(name) for name in primitives], np.float64)
    return [np.tile(row, (position + 1, 1)) for position in range(num_nodes)]


def scope_credit(tables, scope):
    """Efficiency credit of each node's table under the EGS scope."""
    return [scope_credit_table(table, scope) for table in tables]


def expected_child_cost(logits, terms, primitives, scope, num_samples):
    """Expected cost of the choices of a sampled EGS code (``fixed`` and the
    output mean excluded):
    per node, each edge's map times P(at least one non-none bit on the edge)
    plus each pair's own term times its inclusion probability.

    `logits`: [array [i + 1, K]] the sampled distribution's log-probabilities
    (``RNNSearchModel.sampling_logits``).  With M draws from p, an edge is
    used with probability 1 - (1 - sum of its non-none p)^M, in either scope.
    """
    active = np.array([name != "none" for name in primitives])
    own = np.array([terms.own.get(name, 0.0) for name in primitives])
    total = 0.0
    for values in logits:
        probs = selection_probabilities(np.asarray(values, np.float64), scope)
        edge_used = inclusion_probabilities(probs[:, active].sum(axis=1), num_samples)
        total += terms.map * float(edge_used.sum())
        total += float((inclusion_probabilities(probs, num_samples) * own).sum())
    return total


def genotype_cost(genotype, terms):
    """What a genotype's choices cost: a map per edge with a pair and each
    pair's own term (``fixed`` and the output mean excluded, as in
    ``expected_child_cost``)."""
    pairs = [name for node in genotype.recurrent for name, _ in node]
    return float(terms.map * len(genotype.edges()) + sum(terms.own[name] for name in pairs))


def cell_cost(genotype, terms):
    """Whole cost of a genotype's ``RecurrentCell``: fixed + output mean +
    its choices (what ``count_parameters`` / the profiler count)."""
    return terms.fixed + terms.output * len(genotype.concat) + genotype_cost(genotype, terms)
