"""Derivation rules for one node's logits, shared by the cell spaces.

A node's logits are a matrix ``[inputs, K]`` (row = input node, column =
candidate op).  Under ``scope="node"`` one distribution covers all (input,
op) pairs of the node (DATA); under ``"edge"`` each input has its own.

* ``node_code``: the binary code of rule ``"sample"`` (an EGS draw with the
  search's M) or ``"inclusion"`` (bits whose inclusion probability
  1-(1-p)^M is >= 0.5);
* ``pairs_from_code``: its (op, input) pairs, 'none' dropped; a node left
  empty gets its most probable non-none pair;
* ``node_sample_code`` / ``most_probable_selection``: the DATA authors'
  derivations, both over the node's *flattened* (input, op) distribution
  whatever the search scope -- M EGS draws at temperature 1 (their
  ``gentype_gumbel``: ``W.view(1, -1)``, so at most M pairs per node), and
  their deterministic ``infer_prob`` (``model_infer.py``): the i <= M most
  probable pairs whose exact selection by M draws is the most probable;
* ``top_edge_pairs``: the DARTS rule -- the `edges` inputs with the largest
  non-none probability, each with its argmax non-none op (2 per node in the
  convolutional cell, 1 in the recurrent cell).
"""

import math

import numpy as np
import tensorflow as tf

__all__ = ["selection_probabilities", "distribution_entropies", "inclusion_probabilities", "node_code",
           "pairs_from_code", "top_edge_pairs", "check_finite", "node_sample_code",
           "exact_selection_probability", "most_probable_selection"]


def _softmax(values, axis=-1):
    shifted = values - values.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def selection_probabilities(logits, scope):
    """Probabilities of the (input, op) pairs under the EGS scope."""
    if scope == "node":
        return _softmax(logits.reshape(-1)).reshape(logits.shape)
    if scope == "edge":
        return _softmax(logits, axis=-1)
    raise ValueError(f"EGS scope must be 'edge' or 'node'; got {scope!r}.")


def distribution_entropies(probs, scope):
    """Entropies (natural log) of the distributions in `probs` (from
    ``selection_probabilities``): one for a node scope (over all its
    (input, op) pairs), one per edge for the edge scope."""
    probs = np.asarray(probs, np.float64)
    if scope == "node":
        probs = probs.reshape(1, -1)
    return -(probs * np.log(probs + 1e-12)).sum(axis=-1)


def inclusion_probabilities(probs, num_samples):
    """P(an M-draw EGS code selects the pair)."""
    return -np.expm1(num_samples * np.log1p(-np.clip(probs, 0.0, 1.0 - 1e-12)))


def node_code(estimator, logits, scope, rule, seed):
    """Binary code [inputs, K] of rule "sample" (seed: [2] ints) or "inclusion"."""
    flat = scope == "node"
    values = tf.constant(logits.reshape(-1) if flat else logits, tf.float32)
    if rule == "sample":
        code = estimator.sample(values, seed=tf.constant(seed, tf.int64))
    else:
        code = estimator.deterministic_code(values)
    return np.asarray(code.numpy()).reshape(logits.shape)


def node_sample_code(estimator, logits, seed):
    """Binary code ``[inputs, K]`` of M EGS draws (the estimator's M, at its
    temperature; the code's value does not depend on it) over one softmax of
    the node's flattened logits: at most M ones in the whole node."""
    values = tf.constant(np.asarray(logits).reshape(-1), tf.float32)
    code = estimator.sample(values, seed=tf.constant(seed, tf.int64))
    return np.asarray(code.numpy()).reshape(np.shape(logits))


def exact_selection_probability(probs, num_samples):
    """P(M i.i.d. draws from a categorical distribution select exactly the
    options whose probabilities are `probs`: each at least once, nothing
    else) = sum over subsets T of them of (-1)^(|S|-|T|) p(T)^M.  This is the
    authors' ``get_binary_prob`` (a sum over compositions of M), by
    inclusion-exclusion; 0 when there are more options than draws."""
    probs = [float(p) for p in probs]
    size = len(probs)
    if size == 0 or size > num_samples:
        return 0.0
    terms = []
    for mask in range(1, 1 << size):
        total = sum(probs[i] for i in range(size) if mask >> i & 1)
        sign = -1.0 if (size - bin(mask).count("1")) % 2 else 1.0
        terms.append(sign * total ** num_samples)
    return max(math.fsum(terms), 0.0)


def most_probable_selection(probs, num_samples):
    """The authors' ``infer_prob``: flat indices of the i most probable
    options, i in 1..M chosen so that M draws selecting exactly them is the
    most probable outcome among these M candidates (ties: the smaller i)."""
    flat = np.asarray(probs, np.float64).reshape(-1)
    order = np.argsort(-flat, kind="stable")
    best, best_size = -1.0, 1
    for size in range(1, min(num_samples, flat.size) + 1):
        value = exact_selection_probability(flat[order[:size]], num_samples)
        if value > best:
            best, best_size = value, size
    return order[:best_size]


def _most_probable_pair(probs, primitives):
    masked = probs.copy()
    for k, name in enumerate(primitives):
        if name == "none":
            masked[:, k] = -1.0
    source, k = np.unravel_index(np.argmax(masked), masked.shape)
    return (primitives[k], int(source))


def pairs_from_code(code, probs, primitives):
    pairs = [(primitives[k], int(source))
             for source in range(code.shape[0]) for k in range(code.shape[1])
             if code[source, k] > 0.5 and primitives[k] != "none"]
    return pairs or [_most_probable_pair(probs, primitives)]


def top_edge_pairs(probs, primitives, edges):
    keep = [k for k, name in enumerate(primitives) if name != "none"]
    strength = probs[:, keep].max(axis=1)
    sources = sorted(np.argsort(-strength, kind="stable")[:edges])
    return [(primitives[keep[int(np.argmax(probs[s, keep]))]], int(s)) for s in sources]


def check_finite(named_logits):
    """ValueError when any logit matrix ({name: array}) is not finite."""
    bad = [name for name, values in named_logits.items() if not np.all(np.isfinite(values))]
    if bad:
        raise ValueError(f"architecture logits are not finite ({', '.join(bad)}): the search "
                         "diverged; nothing can be derived from them.")
