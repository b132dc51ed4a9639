"""Search methods runnable in the same code: DATA and its baselines.

All methods share the cells, candidate ops, data pipelines, optimisers and
budgets; they differ only in how architecture logits become edge weights,
how the logits are optimised, and how the final cell is derived:

========  ===========================  ==========  ==============  ============
method    edge weights                 ops run     logits updated  derivation
========  ===========================  ==========  ==============  ============
data      EGS binary code, M samples   sampled     jointly (Eq.6)  EGS sample
gdas      Gumbel-Softmax (EGS, M=1)    sampled     jointly         top-2 argmax
darts     softmax mixing               all         held-out split  top-2 argmax
random    (no logits) uniform cells    the cell    --              best on valid
========  ===========================  ==========  ==============  ============

``darts`` is first order by default; ``darts_order=2`` takes the unrolled
second-order architecture gradient.  ``gdas`` is the one-hot estimator of
SNAS/GDAS (one op per edge or node per step) with GDAS' argmax derivation.
``random`` is run by :mod:`datanas.search.random_search`.
"""

import dataclasses

__all__ = ["SEARCH_METHODS", "SCOPES", "MethodSettings", "method_settings", "method_scope",
           "ARCH_WEIGHT_DECAY", "method_arch_weight_decay"]

SEARCH_METHODS = ("data", "gdas", "darts", "random")


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """SearchNetwork keyword arguments and SearchConfig fields of a method."""
    method: str
    network: dict
    config: dict


#: L2 decay of the architecture logits when a run does not set one.  DARTS
#: and GDAS: 1e-3, as in their papers.  DATA: 0.  The decay is added to the
#: gradient before Adam normalises it, so what it does depends on the
#: gradient's size; EGS' gradient is ~16x smaller than DARTS' at the search's
#: starting temperature, so DARTS' 1e-3 outweighs it and pins the logits near
#: uniform (|logit| <= 0.14 after warm-up: README "Does the architecture
#: learn?", docs/arch_signal).
ARCH_WEIGHT_DECAY = {"data": 0.0, "gdas": 1e-3, "darts": 1e-3, "random": 0.0}

#: The decay a config used without a method takes (DARTS' search recipe).
DEFAULT_ARCH_WEIGHT_DECAY = 1e-3

SCOPES = ("edge", "node")
DEFAULT_SCOPE = {"data": "node", "gdas": "edge", "darts": "edge", "random": "edge"}


def method_scope(method, scope=None):
    """The distribution scope of `method`; None means its default."""
    if scope is None:
        return DEFAULT_SCOPE[method]
    if scope not in SCOPES:
        raise ValueError(f"egs_scope must be one of {', '.join(SCOPES)}; got {scope!r}.")
    if scope == "node" and method in ("darts", "gdas"):
        raise ValueError(f"method {method!r} has one distribution per edge (as in its paper); "
                         "egs_scope='node' is DATA's option only. Drop --egs_scope or use "
                         "--egs_scope=edge.")
    return scope


def method_arch_weight_decay(method, decay=None):
    """The logits' L2 decay of `method`: `decay` when given, else its default
    (ARCH_WEIGHT_DECAY)."""
    if decay is not None:
        return decay
    if method not in ARCH_WEIGHT_DECAY:
        raise ValueError(f"method must be one of {', '.join(SEARCH_METHODS)}; got {method!r}.")
    return ARCH_WEIGHT_DECAY[method]


def method_settings(method, *, num_samples=4, search_mode=None, derivation=None,
                    darts_order=1, scope=None, arch_weight_decay=None):
    """Settings of a gradient-based method; explicit choices override defaults.

    Args:
      method: one of "data", "gdas", "darts" ("random" has no supernet).
      num_samples: M of the EGS estimator (data); gdas requires 1.
      search_mode: None for the method's default ("joint" for data/gdas,
        "alternate" for darts), or an explicit "joint"/"alternate".
      derivation: None for the method's default rule, or a rule name.
      darts_order: 1 or 2 (darts only).
      scope: None for the method's default distribution scope, or "edge" /
        "node" ("node" is refused for darts and gdas).
      arch_weight_decay: None for the method's default (ARCH_WEIGHT_DECAY),
        or an explicit decay.

    Raises:
      ValueError: naming the conflicting value and what is allowed.
    """
    if method not in SEARCH_METHODS:
        raise ValueError(f"method must be one of {', '.join(SEARCH_METHODS)}; got {method!r}.")
    if method == "random":
        raise ValueError("method 'random' trains sampled cells without a supernet; use "
                         "datanas.search.random_search.run_random_search.")
    if darts_order not in (1, 2):
        raise ValueError(f"darts_order must be 1 or 2, got {darts_order!r}.")
    if darts_order == 2 and method != "darts":
        raise ValueError(f"darts_order=2 is the second-order DARTS step; method {method!r} "
                         "has no unrolled step (use method='darts').")
    if method == "gdas" and num_samples != 1:
        raise ValueError(f"method 'gdas' is the Gumbel-Softmax estimator with M=1; got M="
                         f"{num_samples} (use method='data' for M > 1).")
    scope = method_scope(method, scope)
    if method == "darts":
        network = {"weighting": "softmax", "mode": "dense", "num_samples": num_samples,
                   "scope": scope}
        mode = search_mode or "alternate"
        if darts_order == 2 and mode != "alternate":
            raise ValueError("second-order DARTS (darts_order=2) needs search_mode='alternate'; "
                             f"got {mode!r}.")
        config = {"search_mode": mode, "unrolled": darts_order == 2,
                  "derivation": derivation or "darts"}
    else:
        network = {"weighting": "egs", "mode": "sparse", "num_samples": num_samples,
                   "scope": scope}
        config = {"search_mode": search_mode or "joint", "unrolled": False,
                  "derivation": derivation or ("sample" if method == "data" else "darts")}
    config["arch_weight_decay"] = method_arch_weight_decay(method, arch_weight_decay)
    return MethodSettings(method=method, network=network, config=config)
