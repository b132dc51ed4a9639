"""Turning learned architecture logits into a genotype (paper Section 4).

Five rules, all reading the per-node logit matrices ``[j + 2, K]`` of a
SearchNetwork (row i = edge from node i, column k = op k):

* ``"node_sample"`` (DATA's default, the authors' ``gentype_gumbel``): per
  node, M EGS draws at temperature 1 over ONE softmax of the node's
  flattened (input, op) logits, whatever the search scope; 'none' dropped,
  so at most M pairs per node.  A node left with no pair gets its most
  probable non-none pair (the authors' code would leave it empty).
* ``"node_infer"`` (the authors' deterministic ``infer_prob``,
  ``model_infer.py``): per node, the i <= M most probable pairs of the
  flattened distribution, i chosen so that M draws selecting exactly them is
  most probable; 'none' dropped, with the same fallback.
* ``"sample"`` (the per-scope draw): draw the cell with the *same* EGS estimator and scope
  that were used during search, so the validated network is a sample of the
  searched distribution.  'none' bits are dropped; a node left with no input
  gets its most probable non-none (input, op) pair.
* ``"inclusion"`` (formerly ``most_likely``; that name is still accepted):
  the deterministic EGS code -- every bit whose inclusion probability
  1-(1-p)^M is >= 0.5 -- with the same 'none' handling.  This is a
  threshold rule, not the single most probable code.
* ``"darts"``: the DARTS rule for comparison -- keep the two incoming edges
  with the largest non-none probability, each with its argmax non-none op.
"""

import numpy as np
import tensorflow as tf

from datanas.spaces.darts_cnn.genotype import CELL_KINDS, Genotype
from datanas.estimators import EnsembleGumbelSoftmax
from datanas.spaces.node_rules import (check_finite, inclusion_probabilities, most_probable_selection,
                                       node_code, node_sample_code, pairs_from_code,
                                       selection_probabilities, top_edge_pairs)

__all__ = ["DERIVATION_RULES", "RULE_ALIASES", "canonical_rule", "derive_genotype", "architecture_probabilities",
           "genotype_to_weights", "logits_of"]

DERIVATION_RULES = ("node_sample", "node_infer", "sample", "inclusion", "darts")
#: Earlier names of rules, still accepted.
RULE_ALIASES = {"most_likely": "inclusion"}


def canonical_rule(rule):
    """The rule's current name; ValueError naming the allowed ones."""
    rule = RULE_ALIASES.get(rule, rule)
    if rule not in DERIVATION_RULES:
        raise ValueError(f"derivation rule must be one of {', '.join(DERIVATION_RULES)}; "
                         f"got {rule!r}.")
    return rule


def logits_of(model):
    """{kind: [np.ndarray [j+2, K], ...]}: the logits a SearchNetwork samples
    from (its learned logits, or log p of resource-aware sampling), so a
    derived genotype is a sample of what was searched."""
    return {kind: [np.asarray(tf.reshape(model.sampling_logits(kind, node), v.shape).numpy(),
                              dtype=np.float64)
                   for node, v in enumerate(model.arch_logits[kind])]
            for kind in CELL_KINDS}


def architecture_probabilities(logits, scope, num_samples, primitives):
    """JSON-ready probabilities: per kind, per node, per (input, op).

    Each entry has ``p`` (softmax probability under the scope) and
    ``inclusion`` (probability that an EGS sample with M draws selects it).
    """
    out = {"scope": scope, "num_samples": num_samples, "primitives": list(primitives)}
    for kind in CELL_KINDS:
        nodes = []
        for node, node_logits in enumerate(logits[kind]):
            probs = selection_probabilities(node_logits, scope)
            inclusion = inclusion_probabilities(probs, num_samples)
            nodes.append({
                "node": node + 2,
                "p": np.round(probs, 6).tolist(),
                "inclusion": np.round(inclusion, 6).tolist(),
            })
        out[kind] = nodes
    return out


def derive_genotype(logits, *, rule, scope, num_samples, primitives, seed=0, concat=None):
    """Derives a Genotype from architecture logits.

    Args:
      logits: {kind: [array [j+2, K]]} (see `logits_of`).
      rule: one of DERIVATION_RULES.
      scope: "edge" or "node"; must be the scope used in search.
      num_samples: M of the EGS estimator used in search.
      primitives: op names matching the last logit axis.
      seed: integer seed of the EGS sample (rules "sample", "node_sample").
      concat: output nodes; default all intermediate nodes.
    """
    rule = canonical_rule(rule)
    check_finite({f"{kind} node {node + 2}": values for kind in CELL_KINDS
                  for node, values in enumerate(logits[kind])})
    if scope not in ("edge", "node"):
        raise ValueError(f"EGS scope must be 'edge' or 'node'; got {scope!r}.")
    egs = EnsembleGumbelSoftmax(num_samples=num_samples, temperature=1.0)
    cells = {}
    for kind_index, kind in enumerate(CELL_KINDS):
        nodes = []
        for node, node_logits in enumerate(logits[kind]):
            probs = selection_probabilities(node_logits, scope)
            if rule == "darts":
                nodes.append(top_edge_pairs(probs, primitives, edges=2))
                continue
            if rule in ("node_sample", "node_infer"):
                flat = selection_probabilities(node_logits, "node")
                if rule == "node_sample":
                    code = node_sample_code(egs, node_logits, [seed, kind_index * 1000 + node])
                else:
                    code = np.zeros(flat.size)
                    code[most_probable_selection(flat, num_samples)] = 1.0
                    code = code.reshape(flat.shape)
                nodes.append(pairs_from_code(code, flat, primitives))
                continue
            code = node_code(egs, node_logits, scope, rule, [seed, kind_index * 1000 + node])
            nodes.append(pairs_from_code(code, probs, primitives))
        cells[kind] = nodes
    num_nodes = len(logits["normal"])
    concat = tuple(concat) if concat is not None else tuple(range(2, num_nodes + 2))
    return Genotype(normal=cells["normal"], normal_concat=concat,
                    reduce=cells["reduce"], reduce_concat=concat)


def genotype_to_weights(genotype, primitives, num_nodes, edge_combine="sum"):
    """Edge weights {kind: [array [j+2, K]]} that make a SearchNetwork
    compute exactly the cells of `genotype` (the child inside the supernet):
    binary, each row divided by its number of non-none ones for
    ``edge_combine="mean"`` (the authors' ``genotype2weight``), as the
    supernet's own codes are."""
    index = {name: k for k, name in enumerate(primitives)}
    out = {}
    for kind in CELL_KINDS:
        cell = genotype.cell(kind)
        if len(cell) != num_nodes:
            raise ValueError(
                f"genotype {kind} cell has {len(cell)} nodes but the network has {num_nodes}.")
        weights = []
        for node, pairs in enumerate(cell):
            matrix = np.zeros((node + 2, len(primitives)), np.float32)
            for op, source in pairs:
                if op not in index:
                    raise ValueError(f"genotype op {op!r} is not among the network's primitives "
                                     f"({', '.join(primitives)}).")
                matrix[source, index[op]] = 1.0
            if edge_combine == "mean":
                matrix /= np.maximum(matrix[:, [name != "none" for name in primitives]]
                                     .sum(axis=1, keepdims=True), 1.0)
            elif edge_combine != "sum":
                raise ValueError(f"edge_combine must be 'mean' or 'sum'; got {edge_combine!r}.")
            weights.append(tf.constant(matrix))
        out[kind] = weights
    return out
