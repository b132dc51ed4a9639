"""Hyper-parameters of a search and the EGS temperature schedule.

Weights: SGD, momentum 0.9, cosine learning rate 0.025 -> 0.001, L2 weight
decay 3e-4 added to the clipped gradient (global norm 5).  Architecture
logits: Adam 3e-4, betas (0.5, 0.999) (DARTS' search settings, which the
DATA paper follows); L2 weight decay of the logits: the method's (None,
filled in by datanas.searching.runs.resolve_method; DARTS and GDAS 1e-3 as in
their papers, DATA 0 -- datanas.searching.methods.ARCH_WEIGHT_DECAY says why).  The EGS temperature
anneals linearly over epochs, from the method's (None, filled in by
resolve_method: 5 -> 1 for DATA, 10 -> 0.1 for GDAS; 5 -> 1 without a
method) or the given values; the architecture learning rate is 0 for the
first ``arch_warmup_epochs`` epochs.  ``egs_gradient`` and ``edge_combine``
record the EGS supernet's settings (None: the method's, filled in by
resolve_method; see datanas.searching.methods).
"""

import dataclasses
import math

__all__ = ["SEARCH_MODES", "EXECUTIONS", "EGS_GRADIENTS", "EDGE_COMBINES", "SearchConfig",
           "temperature_at", "arch_learning_rate_at", "DEFAULT_TEMPERATURES"]

SEARCH_MODES = ("joint", "alternate")
# How steps run: "graph" compiles each step (the whole supernet) as one
# tf.function; "host" samples the child, then runs only its ops eagerly
# through shared compiled layer functions; "auto" is host where the supernet
# supports it, the strategy is not a TPU one and the run is short enough for
# the saved build time to outweigh the slower steps (search/searcher.py).
EXECUTIONS = ("auto", "host", "graph")
# SearchNetwork's choices (datanas.spaces.darts_cnn.supernet), repeated here
# so that a config is checked without importing TensorFlow: "full" computes
# undrawn ops forward only (every code bit gets its straight-through
# gradient), "sampled" skips them; "mean" divides an edge's code by its
# number of non-none ones, "sum" adds the selected ops.
EGS_GRADIENTS = ("full", "sampled")
EDGE_COMBINES = ("mean", "sum")
#: (initial, final) temperature of a config used without a method.
DEFAULT_TEMPERATURES = (5.0, 1.0)


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Hyper-parameters of a search (defaults: the paper / DARTS recipe)."""
    epochs: int = 50
    learning_rate: float = 0.025
    learning_rate_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_learning_rate: float = 3e-4
    arch_beta_1: float = 0.5
    arch_beta_2: float = 0.999
    # None: the method's default (methods.ARCH_WEIGHT_DECAY, filled in by
    # runs.resolve_method); a config used without a method (a bare Searcher)
    # takes DARTS' 1e-3.
    arch_weight_decay: float | None = None
    # Epochs whose architecture learning rate is 0: the weights train on
    # children of the initial distribution before the logits move (the
    # warm-up of PC-DARTS / DARTS+).  None (= 0) keeps the identities of runs
    # made before this setting.
    arch_warmup_epochs: int | None = None
    # None: the method's (datanas.searching.methods.TEMPERATURES, filled in by
    # runs.resolve_method); DEFAULT_TEMPERATURES without a method.
    initial_temperature: float | None = None
    final_temperature: float | None = None
    search_mode: str = "joint"
    derivation: str = "sample"
    unrolled: bool = False
    # Finite-difference step of the Hessian-vector product, as a fraction of
    # the held-out gradient's norm (DARTS: 0.01).
    hessian_radius: float = 0.01
    seed: int = 0
    execution: str = "auto"
    # None: the method's (filled in by runs.resolve_method); EGS methods only.
    egs_gradient: str | None = None
    edge_combine: str | None = None

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}.")
        for name in ("learning_rate", "arch_learning_rate", "initial_temperature",
                     "final_temperature", "grad_clip", "hessian_radius"):
            value = getattr(self, name)
            if value is None and name.endswith("_temperature"):
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        for name in ("learning_rate_min", "weight_decay", "arch_weight_decay"):
            value = getattr(self, name)
            if name == "arch_weight_decay" and value is None:
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
        if self.learning_rate_min > self.learning_rate:
            raise ValueError(f"learning_rate_min ({self.learning_rate_min}) must not exceed "
                             f"learning_rate ({self.learning_rate}).")
        for name in ("momentum", "arch_beta_1", "arch_beta_2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
        if self.search_mode not in SEARCH_MODES:
            raise ValueError(f"search_mode must be one of {', '.join(SEARCH_MODES)}; "
                             f"got {self.search_mode!r}.")
        if self.execution not in EXECUTIONS:
            raise ValueError(f"execution must be one of {', '.join(EXECUTIONS)}; "
                             f"got {self.execution!r}.")
        for name, choices in (("egs_gradient", EGS_GRADIENTS), ("edge_combine", EDGE_COMBINES)):
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")
        if self.unrolled and self.search_mode != "alternate":
            raise ValueError("unrolled (second-order) architecture steps need "
                             "search_mode='alternate' (a held-out architecture split); got "
                             f"search_mode={self.search_mode!r}.")
        if not isinstance(self.derivation, str) or not self.derivation:
            raise ValueError(f"derivation must be a rule name, got {self.derivation!r}.")
        warmup = self.arch_warmup_epochs
        if warmup is not None and (isinstance(warmup, bool) or not isinstance(warmup, int)
                                   or not 0 <= warmup < self.epochs):
            raise ValueError(f"arch_warmup_epochs must be an integer in [0, epochs={self.epochs}) "
                             f"(the architecture must be trained in some epoch), got "
                             f"{warmup!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}.")


def temperature_at(config, epoch):
    """Linear annealing from initial to final temperature over the epochs:
    ``initial - (initial - final) * epoch / (epochs - 1)``, set once per
    epoch (GDAS' schedule, xautodl exps/NAS-Bench-201-algos/GDAS.py).  None
    temperatures (no method resolved them) are DEFAULT_TEMPERATURES."""
    initial = DEFAULT_TEMPERATURES[0] if config.initial_temperature is None \
        else config.initial_temperature
    final = DEFAULT_TEMPERATURES[1] if config.final_temperature is None \
        else config.final_temperature
    if config.epochs == 1:
        return final
    fraction = min(max(epoch / (config.epochs - 1), 0.0), 1.0)
    return initial + fraction * (final - initial)




def arch_learning_rate_at(config, epoch):
    """The architecture learning rate of (0-based) `epoch`: 0 during the
    warm-up epochs, the configured rate after."""
    if epoch < (config.arch_warmup_epochs or 0):
        return 0.0
    return config.arch_learning_rate
