"""Estimators: how architecture logits become the weights of a step.

* ``EnsembleGumbelSoftmax`` (DATA): binary codes with 1..M ones, M Gumbel
  draws combined by a max; M=1 is the straight-through Gumbel-Softmax of
  SNAS/GDAS.  Codes are exactly 0/1, so unselected ops are skipped.
* ``SoftmaxMixing`` (DARTS): continuous softmax weights on every op.

A search space calls ``estimator.sample(logits, seed)`` during search and
``estimator.deterministic_code(logits)`` for inference; ``binary_codes``
tells it whether zero weights may be skipped.  A new estimator goes here
and into ``WEIGHTINGS``; no search space or run loop changes.
"""

from datanas.estimators.ensemble_gumbel_softmax import (EnsembleGumbelSoftmax,
                                                       inclusion_probabilities)
from datanas.estimators.softmax_mixing import SoftmaxMixing

__all__ = ["EnsembleGumbelSoftmax", "SoftmaxMixing", "inclusion_probabilities", "WEIGHTINGS",
           "make_estimator"]

WEIGHTINGS = ("egs", "softmax")


def make_estimator(weighting, *, num_samples=1, temperature=1.0, seed=None, name="estimator"):
    """The estimator layer called `weighting` ("egs" or "softmax")."""
    if weighting == "egs":
        return EnsembleGumbelSoftmax(num_samples, temperature, seed=seed, name=name)
    if weighting == "softmax":
        return SoftmaxMixing(name=name)
    raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}; got {weighting!r}.")
