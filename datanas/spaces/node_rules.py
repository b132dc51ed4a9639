"""Derivation rules for one node's logits, shared by the cell spaces.

A node's logits are a matrix ``[inputs, K]`` (row = input node, column =
candidate op).  Under ``scope="node"`` one distribution covers all (input,
op) pairs of the node (DATA); under ``"edge"`` each input has its own.

* ``node_code``: the binary code of rule ``"sample"`` (an EGS draw with the
  search's M) or ``"inclusion"`` (bits whose inclusion probability
  1-(1-p)^M is >= 0.5);
* ``pairs_from_code``: its (op, input) pairs, 'none' dropped; a node left
  empty gets its most probable non-none pair;
* ``top_edge_pairs``: the DARTS rule -- the `edges` inputs with the largest
  non-none probability, each with its argmax non-none op (2 per node in the
  convolutional cell, 1 in the recurrent cell).
"""

import numpy as np
import tensorflow as tf

__all__ = ["selection_probabilities", "distribution_entropies", "inclusion_probabilities", "node_code",
           "pairs_from_code", "top_edge_pairs", "check_finite"]


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
