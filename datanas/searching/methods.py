"""Search methods runnable in the same code: DATA and its baselines.

All methods share the cells, candidate ops, data pipelines, optimisers and
budgets; they differ only in how architecture logits become edge weights,
how the logits are optimised, and how the final cell is derived:

=========  ==========================  ============  ===============  =========  ============
method     edge weights                ops run       logits updated   tau        derivation
=========  ==========================  ============  ===============  =========  ============
data       EGS code, M samples, per    all (undrawn  jointly (Eq. 6)  5 -> 1     node_sample
           edge; code / its ones       forward only)
gdas       hard Gumbel one-hot (M=1)   the selected  held-out split   10 -> 0.1  top-2 argmax
snas_like  hard Gumbel one-hot (M=1)   the selected  jointly          5 -> 1     top-2 argmax
darts      softmax mixing              all           held-out split   --         top-2 argmax
random     (no logits) uniform cells   the cell      --               --         best on valid
=========  ==========================  ============  ===============  =========  ============

``data`` follows the authors' search: one distribution per edge by default
(``egs_scope="node"`` is an option), ``egs_gradient="full"`` (undrawn ops
are computed forward only, so every bit of the code gets its
straight-through gradient; "sampled" skips them, the earlier behaviour) and
``edge_combine="mean"`` (an edge divides its code by its number of
non-``none`` ones; "sum" adds them, the earlier behaviour); its cell is
derived by ``node_sample`` (per node, M EGS draws over the node's flattened
probabilities, at most M pairs).

``gdas`` is GDAS (Dong & Yang, CVPR 2019) as its code runs it (xautodl
``exps/NAS-Bench-201-algos/GDAS.py``): per step, a weight step on a
training batch and an architecture step on a batch of the held-out split
("alternate"); Adam 3e-4, betas (0.5, 0.999), logit decay 1e-3; tau set at
the start of each epoch to ``tau_max - (tau_max - tau_min) * epoch /
(epochs - 1)`` with tau_max=10, tau_min=0.1 (temperature_at is that
schedule); one op per edge (M=1, ``egs_gradient="sampled"``) and the top-2
argmax derivation.  How its forward relates to ours: GDAS draws the
straight-through one-hot ``hardwts = one_hot - probs.detach() + probs`` and
sums ``hardwts[k] * op_k(x)`` for the selected op k and the bare scalar
``hardwts[j]`` for every other op j (xautodl ``search_cells.py``
``forward_gdas``).  Those scalars are 0 in the forward pass, so both codes
compute the same output; in the backward pass GDAS' unselected bit j gets
the sum of the edge's output gradient (the gradient of a scalar broadcast
over the output), ours with ``egs_gradient="sampled"`` gets 0 (the op is not
run), and with "full" it would get <output gradient, op_j(x)>, the
straight-through gradient of the code.  The selected bit's gradient,
<output gradient, op_k(x)>, is the same in all three, and the softmax
couples every logit to it.

``snas_like`` is what ``gdas`` ran before: GDAS' one-hot sample with DATA's
single-level joint step and temperature; kept as a named variant.
``darts`` is first order by default; ``darts_order=2`` takes the unrolled
second-order architecture gradient.  ``random`` is run by
:mod:`datanas.searching.random_search`.
"""

import dataclasses

from datanas.searching.config import EDGE_COMBINES, EGS_GRADIENTS

__all__ = ["SEARCH_METHODS", "SCOPES", "MethodSettings", "method_settings", "method_scope",
           "ARCH_WEIGHT_DECAY", "method_arch_weight_decay", "TEMPERATURES",
           "method_temperatures", "EGS_METHODS", "EGS_GRADIENTS", "EDGE_COMBINES"]

SEARCH_METHODS = ("data", "gdas", "snas_like", "darts", "random")

#: Methods whose supernet samples EGS codes (the others mix or have none).
EGS_METHODS = ("data", "gdas", "snas_like")


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
ARCH_WEIGHT_DECAY = {"data": 0.0, "gdas": 1e-3, "snas_like": 1e-3, "darts": 1e-3,
                     "random": 0.0}

#: The decay a config used without a method takes (DARTS' search recipe).
DEFAULT_ARCH_WEIGHT_DECAY = 1e-3

#: (first-epoch, last-epoch) temperature of a method when a run sets none.
#: GDAS: tau_max=10, tau_min=0.1 (xautodl scripts-search GDAS runs); the
#: others keep DATA's 5 -> 1 (DARTS' softmax has no temperature).
TEMPERATURES = {"data": (5.0, 1.0), "gdas": (10.0, 0.1), "snas_like": (5.0, 1.0),
                "darts": (5.0, 1.0), "random": (5.0, 1.0)}

#: egs_gradient and edge_combine of each EGS method when a run sets none.
#: GDAS (and the hybrid) compute only the selected op; with one op per edge
#: the two combines coincide.
DEFAULT_EGS_GRADIENT = {"data": "full", "gdas": "sampled", "snas_like": "sampled"}
DEFAULT_EDGE_COMBINE = {"data": "mean", "gdas": "mean", "snas_like": "mean"}

SCOPES = ("edge", "node")
DEFAULT_SCOPE = {"data": "edge", "gdas": "edge", "snas_like": "edge", "darts": "edge",
                 "random": "edge"}

#: Derivation rule of each gradient-based method when a run sets none.
DEFAULT_DERIVATION = {"data": "node_sample", "gdas": "darts", "snas_like": "darts",
                      "darts": "darts"}


def _check_method(method):
    if method not in SEARCH_METHODS:
        raise ValueError(f"method must be one of {', '.join(SEARCH_METHODS)}; got {method!r}.")


def method_scope(method, scope=None):
    """The distribution scope of `method`; None means its default."""
    _check_method(method)
    if scope is None:
        return DEFAULT_SCOPE[method]
    if scope not in SCOPES:
        raise ValueError(f"egs_scope must be one of {', '.join(SCOPES)}; got {scope!r}.")
    if scope == "node" and method in ("darts", "gdas", "snas_like"):
        raise ValueError(f"method {method!r} has one distribution per edge (as in its paper); "
                         "egs_scope='node' is DATA's option only. Drop --egs_scope or use "
                         "--egs_scope=edge.")
    return scope


def method_arch_weight_decay(method, decay=None):
    """The logits' L2 decay of `method`: `decay` when given, else its default
    (ARCH_WEIGHT_DECAY)."""
    if decay is not None:
        return decay
    _check_method(method)
    return ARCH_WEIGHT_DECAY[method]


def method_temperatures(method, initial=None, final=None):
    """(initial, final) temperature of `method`: each given value, else the
    method's default (TEMPERATURES)."""
    _check_method(method)
    default_initial, default_final = TEMPERATURES[method]
    return (default_initial if initial is None else initial,
            default_final if final is None else final)


def _egs_options(method, egs_gradient, edge_combine):
    """egs_gradient and edge_combine of an EGS method (None: its default)."""
    if egs_gradient is not None and egs_gradient not in EGS_GRADIENTS:
        raise ValueError(f"egs_gradient must be one of {', '.join(EGS_GRADIENTS)}; got "
                         f"{egs_gradient!r}.")
    if edge_combine is not None and edge_combine not in EDGE_COMBINES:
        raise ValueError(f"edge_combine must be one of {', '.join(EDGE_COMBINES)}; got "
                         f"{edge_combine!r}.")
    if method not in EGS_METHODS:
        if egs_gradient is not None or edge_combine is not None:
            raise ValueError(f"egs_gradient and edge_combine shape EGS codes (methods "
                             f"{', '.join(EGS_METHODS)}); method {method!r} samples none. "
                             "Drop --egs_gradient and --edge_combine.")
        return {}
    if method == "gdas" and egs_gradient not in (None, "sampled"):
        raise ValueError(f"method 'gdas' computes only the selected op (as GDAS does); got "
                         f"egs_gradient={egs_gradient!r}. Drop --egs_gradient or use "
                         "--egs_gradient=sampled.")
    return {"egs_gradient": egs_gradient or DEFAULT_EGS_GRADIENT[method],
            "edge_combine": edge_combine or DEFAULT_EDGE_COMBINE[method]}


def method_settings(method, *, num_samples=4, search_mode=None, derivation=None,
                    darts_order=1, scope=None, arch_weight_decay=None, egs_gradient=None,
                    edge_combine=None, initial_temperature=None, final_temperature=None):
    """Settings of a gradient-based method; explicit choices override defaults.

    Args:
      method: one of "data", "gdas", "snas_like", "darts" ("random" has no
        supernet).
      num_samples: M of the EGS estimator (data); gdas and snas_like require 1.
      search_mode: None for the method's default ("alternate" for gdas and
        darts, "joint" for data and snas_like), or "joint"/"alternate".
      derivation: None for the method's default rule (DEFAULT_DERIVATION),
        or a rule name.
      darts_order: 1 or 2 (darts only).
      scope: None for the method's default distribution scope ("edge"), or
        "edge" / "node" ("node" is refused for darts, gdas and snas_like).
      arch_weight_decay: None for the method's default (ARCH_WEIGHT_DECAY),
        or an explicit decay.
      egs_gradient: None for the method's default ("full" for data,
        "sampled" for gdas and snas_like), or "full" / "sampled" (gdas
        refuses "full"); EGS methods only.
      edge_combine: None for the method's default ("mean"), or "mean" /
        "sum"; EGS methods only.
      initial_temperature, final_temperature: None for the method's
        (TEMPERATURES), or explicit values.

    Raises:
      ValueError: naming the conflicting value and what is allowed.
    """
    _check_method(method)
    if method == "random":
        raise ValueError("method 'random' trains sampled cells without a supernet; use "
                         "datanas.searching.random_search.run_random_search.")
    if darts_order not in (1, 2):
        raise ValueError(f"darts_order must be 1 or 2, got {darts_order!r}.")
    if darts_order == 2 and method != "darts":
        raise ValueError(f"darts_order=2 is the second-order DARTS step; method {method!r} "
                         "has no unrolled step (use method='darts').")
    if method in ("gdas", "snas_like") and num_samples != 1:
        raise ValueError(f"method {method!r} is the Gumbel-Softmax estimator with M=1; got M="
                         f"{num_samples} (use method='data' for M > 1).")
    scope = method_scope(method, scope)
    egs = _egs_options(method, egs_gradient, edge_combine)
    if method == "darts":
        network = {"weighting": "softmax", "mode": "dense", "num_samples": num_samples,
                   "scope": scope}
        mode = search_mode or "alternate"
        if darts_order == 2 and mode != "alternate":
            raise ValueError("second-order DARTS (darts_order=2) needs search_mode='alternate'; "
                             f"got {mode!r}.")
    else:
        network = {"weighting": "egs", "mode": "sparse", "num_samples": num_samples,
                   "scope": scope, **egs}
        mode = search_mode or ("alternate" if method == "gdas" else "joint")
    initial, final = method_temperatures(method, initial_temperature, final_temperature)
    config = {"search_mode": mode, "unrolled": darts_order == 2,
              "derivation": derivation or DEFAULT_DERIVATION[method],
              "arch_weight_decay": method_arch_weight_decay(method, arch_weight_decay),
              "initial_temperature": initial, "final_temperature": final, **egs}
    return MethodSettings(method=method, network=network, config=config)
