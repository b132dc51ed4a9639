"""What each candidate op of the conv supernet costs: parameters, multiply-adds, latency.

Costs come from the supernet's own op layers at the shapes they run at: for
every cell, node, input edge and op.  Architecture logits are shared by all
cells of a kind, so a kind's table sums an op's cost over the cells of that
kind: entry ``[kind][node][i, k]`` is what choosing op k on edge (i -> node)
adds to the child network.

* ``params``: trainable parameters of the op layer (``count_parameters``).
* ``madds``: multiply-adds of one image through the op, counted by the TF
  profiler like the trainers' model statistics (``count_multiply_adds``).
* ``latency``: median seconds of the op's inference forward on a batch of
  ``LATENCY_BATCH`` on the current device (ops of one configuration and
  shape are timed once).  Measured, so it varies slightly between runs;
  the search stores the credit it derived in its checkpoint, so a resumed
  search keeps the first measurement.

``none`` costs nothing.  ``expected_child_cost`` is the expected cost of a
sampled child: the sum of each op's inclusion probability times its cost.

Budgets are about the *final* network (``NetworkCIFAR`` of L cells, C
channels, trained from scratch), not the supernet: ``final_cost_tables``
gives the same tables for the final network's ops (affine batch norm, no
search-time BN after pools) at its shapes, and ``final_fixed_cost`` what the
final network costs besides its cells' ops (stem, preprocessing,
classifier), so ``fixed + sum of the genotype's table entries`` is exactly
the parameter / multiply-add count the trainers print (tested).
"""

import numpy as np
import tensorflow as tf

from datanas.core.layer_functions import configuration_key
from datanas.estimators import inclusion_probabilities
from datanas.spaces.darts_cnn.backbone import reduction_cell_indices
from datanas.spaces.darts_cnn.genotype import CELL_KINDS
from datanas.spaces.darts_cnn.ops import build_conv_op
from datanas.spaces.resource_aware import (COST_METRICS, LATENCY_BATCH, median_seconds,
                                           scope_credit_table)
from datanas.core.model_stats import count_multiply_adds, count_parameters

__all__ = ["COST_METRICS", "LATENCY_BATCH", "op_cost", "cost_tables", "scope_credit",
           "expected_child_cost", "cell_plan", "final_cost_tables", "final_fixed_cost",
           "genotype_cost"]


def _op_latency(op, input_shape):
    images = tf.random.stateless_normal((LATENCY_BATCH,) + tuple(input_shape[1:]), seed=[0, 1])
    return median_seconds(tf.function(lambda x: op(x, training=False)), images)


def op_cost(op, input_shape, metric):
    """Cost of one built op layer on inputs of `input_shape` ([B, H, W, C])."""
    if metric == "params":
        return float(count_parameters(op))
    if metric == "madds":
        return float(count_multiply_adds(op, tuple(input_shape[1:])))
    if metric == "latency":
        return _op_latency(op, input_shape)
    raise ValueError(f"cost metric must be one of {', '.join(COST_METRICS)}; got {metric!r}.")


def _op_key(op, input_shape):
    return configuration_key(op) + (tuple(input_shape[1:]),)


def cost_tables(model, metric):
    """{kind: [array [node + 2, K]]} summed op costs of a built SearchNetwork."""
    if metric not in COST_METRICS:
        raise ValueError(f"cost metric must be one of {', '.join(COST_METRICS)}; got {metric!r}.")
    if not model.built:
        raise ValueError("build the supernet before computing its op costs.")
    num_ops = len(model.primitives)
    tables = {kind: [np.zeros((node + 2, num_ops)) for node in range(model.num_nodes)]
              for kind in CELL_KINDS}
    measured = {}
    for cell in model.cells:
        kind = "reduce" if cell.reduction else "normal"
        for node, node_edges in enumerate(cell.edges):
            for position, edge in enumerate(node_edges):
                shape = edge.built_input_shape
                for k, op in enumerate(edge.candidate_ops):
                    if op is None:
                        continue
                    key = _op_key(op, shape)
                    if key not in measured:
                        measured[key] = op_cost(op, shape, metric)
                    tables[kind][node][position, k] += measured[key]
    return tables


def scope_credit(tables, scope):
    """Efficiency credit of each node's options: normalised per edge (row)
    for scope "edge", over all (input, op) pairs of the node for "node"."""
    return {kind: [scope_credit_table(table, scope) for table in per_node]
            for kind, per_node in tables.items()}


def expected_child_cost(logits, tables, scope, num_samples):
    """Expected cost of an EGS-sampled child: sum over kinds, nodes and
    (input, op) of P(bit = 1) * cost, with `logits` {kind: [[node+2, K]]}
    (the sampled distribution's log-probabilities, e.g. ``logits_of``)."""
    total = 0.0
    for kind, per_node in tables.items():
        for values, table in zip(logits[kind], per_node):
            values = np.asarray(values, np.float64)
            flat = values.reshape(1, -1) if scope == "node" else values
            probs = inclusion_probabilities(flat, num_samples).numpy().reshape(values.shape)
            total += float((probs * table).sum())
    return total


def cell_plan(num_cells, init_channels, image_shape):
    """[(reduction, channels, input size, output size)] of a CIFAR-stem cell
    stack (sizes are (H, W) of the cell's preprocessed inputs and output)."""
    reductions = reduction_cell_indices(num_cells)
    size, channels, plan = tuple(image_shape[:2]), init_channels, []
    for index in range(num_cells):
        reduction = index in reductions
        channels *= 2 if reduction else 1
        out = tuple(-(-d // 2) for d in size) if reduction else size
        plan.append((reduction, channels, size, out))
        size = out
    return plan


def final_cost_tables(primitives, num_nodes, num_cells, init_channels, image_shape, metric):
    """{kind: [array [node + 2, K]]}: what each (input, op) choice costs in the
    final network of `num_cells` cells and `init_channels` channels."""
    if metric not in ("params", "madds"):
        raise ValueError(f"a final-network budget is on params or madds; got {metric!r}.")
    tables = {kind: [np.zeros((node + 2, len(primitives))) for node in range(num_nodes)]
              for kind in CELL_KINDS}
    measured = {}
    for reduction, channels, size, out in cell_plan(num_cells, init_channels, image_shape):
        kind = "reduce" if reduction else "normal"
        for node in range(num_nodes):
            for position in range(node + 2):
                stride = 2 if reduction and position < 2 else 1
                shape = (None,) + (size if position < 2 else out) + (channels,)
                for k, name in enumerate(primitives):
                    key = (name, stride, shape)
                    if key not in measured:
                        op = build_conv_op(name, channels, stride, affine=True, search=False)
                        if op is None:
                            measured[key] = 0.0
                        else:
                            op.build(shape)
                            measured[key] = op_cost(op, shape, metric)
                    tables[kind][node][position, k] += measured[key]
    return tables


def genotype_cost(genotype, tables, primitives):
    """Sum of the table entries of a genotype's (op, input) pairs."""
    index = {name: k for k, name in enumerate(primitives)}
    return float(sum(tables[kind][node][source, index[op]]
                     for kind in CELL_KINDS
                     for node, pairs in enumerate(genotype.cell(kind))
                     for op, source in pairs))


def final_fixed_cost(reference, tables, primitives, *, num_classes, num_cells, init_channels,
                     image_shape, metric):
    """What the final network costs besides its cells' ops, from one
    reference genotype: its counted total minus its table entries."""
    from datanas.spaces.darts_cnn.networks import NetworkCIFAR  # pylint: disable=import-outside-toplevel
    model = NetworkCIFAR(reference, num_classes=num_classes, init_channels=init_channels,
                         layers=num_cells, auxiliary=False)
    model.build((None,) + tuple(image_shape))
    total = (count_parameters(model) if metric == "params"
             else count_multiply_adds(model, tuple(image_shape)))
    return float(total) - genotype_cost(reference, tables, primitives)
