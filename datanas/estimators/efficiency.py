"""Resource-aware sampling: an efficiency credit mixed into the sampled distribution.

The DARTS-EGS preprint (Section 3.2.2, Eq. 5) samples op k of a scope (an
edge, or all (input, op) pairs of a node) from

    p_k = lam * h_k + (1 - lam) * l_k

where h = softmax(logits) is the learned *effectiveness* credit and l a fixed
*efficiency* credit from the ops' costs.  It is not a loss term: EGS samples
from p, so the gradient reaches the logits through h, scaled by lam, and
cheap ops keep a sampling floor of (1 - lam) * l_k.  lam = 1 is plain EGS.

The preprint does not say how l is computed.  Here (``efficiency_credit``):

    l_k  proportional to  1 / (epsilon + cost_k / max_j cost_j)

normalised over the scope, epsilon = 0.1.  A free op (``none``, a parameter-
free pool or skip) gets 1/epsilon = 10 units, the most expensive op of the
scope 1/1.1 ~ 0.91, so free ops hold most of the credit; costs are relative
to the scope's maximum, so the metric's unit does not matter.  A scope whose
ops are all free gets a uniform credit.

Estimators take logits; ``mixed_logits`` returns log p, whose softmax is p,
so every estimator, inclusion probability and derivation rule that reads
logits works on the mixed distribution unchanged.
"""

import numpy as np
import tensorflow as tf

__all__ = ["EFFICIENCY_EPSILON", "efficiency_credit", "mixed_logits", "check_cost_lambda"]

#: Credit of a free op relative to the scope's most expensive one: 1/eps vs 1/(eps + 1).
EFFICIENCY_EPSILON = 0.1


def check_cost_lambda(value):
    """lam in [0, 1] (1 = effectiveness only), as a float."""
    try:
        lam = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"cost_lambda must be a number in [0, 1], got {value!r}.") from None
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"cost_lambda must be in [0, 1] (1 = effectiveness only, the paper "
                         f"uses 0.5), got {value!r}.")
    return lam


def efficiency_credit(costs, epsilon=EFFICIENCY_EPSILON):
    """Efficiency credit over the LAST axis of `costs` (one scope per row).

    Args:
      costs: array [..., K] of non-negative op costs (params, multiply-adds,
        seconds...); flatten a node's [inputs, ops] matrix first for a node
        scope.
      epsilon: credit of a free op is 1/epsilon, of the scope's most
        expensive op 1/(epsilon + 1), before normalisation.
    Returns:
      float64 array of the same shape, each row summing to 1.
    """
    costs = np.asarray(costs, np.float64)
    if costs.size == 0 or np.any(~np.isfinite(costs)) or np.any(costs < 0):
        raise ValueError(f"op costs must be finite and >= 0, got {costs!r}.")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}.")
    top = costs.max(axis=-1, keepdims=True)
    relative = np.divide(costs, top, out=np.zeros_like(costs), where=top > 0)
    raw = 1.0 / (epsilon + relative)
    return raw / raw.sum(axis=-1, keepdims=True)


def mixed_logits(logits, credit, cost_lambda):
    """log(lam * softmax(logits) + (1 - lam) * credit) over the last axis.

    Differentiable in `logits` (the gradient is lam times the softmax's);
    `credit` rows sum to 1, so the result is a normalised log-probability.
    """
    logits = tf.cast(logits, tf.float32)
    effectiveness = tf.nn.softmax(logits, axis=-1)
    lam = tf.constant(float(cost_lambda), tf.float32)
    mixed = lam * effectiveness + (1.0 - lam) * tf.cast(credit, tf.float32)
    tiny = float(np.finfo(np.float32).tiny)
    return tf.math.log(tf.maximum(mixed, tiny))
