"""Resource-aware sampling shared by every space's supernet and settings.

One place for what the convolutional and the recurrent spaces do alike
(``estimators/efficiency.py`` has the mixture itself):

* ``ResourceAwareSampling``: a mixin of a supernet (a Keras model) whose
  architecture logits are one matrix ``[inputs, K]`` per node (nested in
  a dict of kinds for the conv space, a list for the recurrent one).  It
  validates ``cost_lambda``, adds one non-trainable *credit* variable per
  logit matrix (saved in checkpoints: a measured latency credit must not
  change when a search resumes), gives the logits a scope samples from
  (``_scope_sampling_logits``: log p of the mixture when lam < 1) and sets
  the credit (``set_efficiency_credit``).
* settings validation (``check_cost_settings``, ``resolve_cost_lambda``)
  with the default lam of a cost set without one;
* ``scope_credit_table``: the efficiency credit of one node's table under
  the EGS scope;
* ``median_seconds``: the latency measurement.
"""

import time

import keras
import numpy as np
import tensorflow as tf

from datanas.estimators import estimator_class
from datanas.estimators.efficiency import check_cost_lambda, efficiency_credit, mixed_logits

__all__ = ["COST_METRICS", "DEFAULT_COST_LAMBDA", "LATENCY_BATCH", "LATENCY_REPEATS",
           "ResourceAwareSampling", "check_cost_settings", "resolve_cost_lambda",
           "scope_credit_table", "median_seconds"]

COST_METRICS = ("params", "madds", "latency")
#: lam of resource-aware sampling when a cost is set without --cost_lambda (the preprint's).
DEFAULT_COST_LAMBDA = 0.5
#: Rows (images, token rows) of a latency measurement.
LATENCY_BATCH = 16
#: Timed repetitions of a latency measurement (the median is kept).
LATENCY_REPEATS = 7


def check_cost_settings(cost, cost_lambda):
    """Validates a space's ``cost`` / ``cost_lambda`` settings (None = unset)."""
    if cost not in (None, "none") + COST_METRICS:
        raise ValueError(f"cost must be one of none, {', '.join(COST_METRICS)}; got {cost!r}.")
    if cost_lambda is not None:
        check_cost_lambda(cost_lambda)
        if cost in (None, "none"):
            raise ValueError(f"cost_lambda={cost_lambda} needs a cost to trade against: set "
                             f"cost to one of {', '.join(COST_METRICS)}.")


def resolve_cost_lambda(cost, cost_lambda):
    """lam of the supernet: 1.0 (learned distribution only) without a cost,
    DEFAULT_COST_LAMBDA with a cost and no explicit lam."""
    if cost in (None, "none"):
        return 1.0
    return DEFAULT_COST_LAMBDA if cost_lambda is None else float(cost_lambda)


def scope_credit_table(table, scope):
    """Efficiency credit of one node's [inputs, K] cost table: normalised per
    input (row) for scope "edge", over all (input, op) pairs for "node"."""
    table = np.asarray(table, np.float64)
    if scope == "node":
        return efficiency_credit(table.reshape(-1)).reshape(table.shape)
    return efficiency_credit(table)


def median_seconds(function, *args, repeats=LATENCY_REPEATS):
    """Median wall seconds of ``function(*args)`` (a tf.function; traced and
    warmed up first; the result is fetched, so the time includes the work)."""
    function(*args)
    function(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), function(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _flat(structure):
    """Node matrices of a dict of kinds (insertion order) or a list, as a list."""
    if hasattr(structure, "keys"):
        return [item for key in structure.keys() for item in structure[key]]
    return list(structure)


class ResourceAwareSampling:
    """Mixin of a supernet with resource-aware EGS sampling (module docstring).

    The model sets ``egs_scope`` and ``arch_logits`` (a list of node
    matrices, or a dict of such lists) and ``credit`` of the same structure
    (empty lists at lam = 1), filled with ``_add_credit``.
    """

    def _init_cost_lambda(self, cost_lambda, weighting):
        """Validates lam and sets ``self.cost_lambda``; lam < 1 needs EGS."""
        self.cost_lambda = check_cost_lambda(cost_lambda)
        if self.cost_lambda < 1.0 and not estimator_class(weighting).binary_codes:
            raise ValueError(f"cost_lambda={cost_lambda} (resource-aware sampling) needs "
                             f"a weighting that samples binary codes ('egs': DATA, GDAS); "
                             f"got weighting={weighting!r}.")

    def _add_credit(self, name, shape):
        """The credit variable of one logit matrix ``shape`` = [inputs, K]:
        non-trainable, uniform over the scope until ``set_efficiency_credit``,
        an attribute `name` (a stable checkpoint path); None at lam = 1."""
        if self.cost_lambda >= 1.0:
            return None
        rows = 1 if self.egs_scope == "node" else shape[0]
        variable = self.add_weight(shape=tuple(shape),
                                   initializer=keras.initializers.Constant(
                                       rows / (shape[0] * shape[1])),
                                   trainable=False, name=name)
        setattr(self, name, variable)
        return variable

    @property
    def credit_variables(self):
        """The credit variables in the order of the logit matrices ([] at lam = 1)."""
        return _flat(self.credit)

    def set_efficiency_credit(self, credit):
        """Sets the efficiency credit: arrays [inputs, K] in the structure of
        ``arch_logits``, each normalised over the supernet's scope
        (``scope_credit_table``)."""
        if self.cost_lambda >= 1.0:
            raise ValueError("set_efficiency_credit needs cost_lambda < 1 (this supernet "
                             "samples from its learned distribution only).")
        if hasattr(self.credit, "keys"):      # by kind, in the supernet's order
            values = [value for key in self.credit.keys() for value in credit[key]]
        else:
            values = list(credit)
        variables = self.credit_variables
        if len(values) != len(variables):
            raise ValueError(f"the credit has {len(values)} node matrices; the supernet "
                             f"{len(variables)}.")
        for variable, value in zip(variables, values):
            variable.assign(tf.cast(value, variable.dtype))

    def _scope_sampling_logits(self, logits, credit):
        """Logits the estimator samples one node from, flattened to
        [inputs * K] for the node scope: the learned logits, or log p of the
        resource-aware mixture with the node's `credit` variable."""
        flat = self.egs_scope == "node"
        values = tf.reshape(logits, [-1]) if flat else tf.convert_to_tensor(logits)
        if self.cost_lambda < 1.0:
            values = mixed_logits(values, tf.reshape(credit, [-1]) if flat else credit,
                                  self.cost_lambda)
        return values
