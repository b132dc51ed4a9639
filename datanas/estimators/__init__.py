"""Estimators: how architecture logits become the weights of a step.

* ``EnsembleGumbelSoftmax`` ("egs", DATA): binary codes with 1..M ones, M
  Gumbel draws combined by a max; M=1 is the straight-through Gumbel-Softmax
  of SNAS/GDAS.  Codes are exactly 0/1, so unselected ops are skipped.
* ``SoftmaxMixing`` ("softmax", DARTS): continuous softmax weights on every op.

Every estimator is an ``Estimator`` (base.py: ``sample``,
``deterministic_code``, ``binary_codes``, ``uses_temperature``) registered
by name with ``register_estimator``; a supernet's ``weighting`` names one.
A new estimator is a module here (or anywhere) with one registration; no
search space or run loop changes.
"""

from datanas.estimators.base import (Estimator, estimator_class, estimator_names, make_estimator,
                                     register_estimator)
from datanas.estimators.ensemble_gumbel_softmax import (EnsembleGumbelSoftmax,
                                                       inclusion_probabilities)
from datanas.estimators.softmax_mixing import SoftmaxMixing

__all__ = ["Estimator", "EnsembleGumbelSoftmax", "SoftmaxMixing", "inclusion_probabilities",
           "register_estimator", "estimator_class", "estimator_names", "make_estimator"]
