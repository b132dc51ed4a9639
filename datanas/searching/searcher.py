"""The compiled (distributed) steps of a search, for any space and task.

``Searcher`` owns the two optimizers and the steps:

* ``joint`` (DATA's single-level optimisation, paper Eq. 6): one
  forward/backward pass of a sampled child on a training batch gives
  gradients for both the network weights and the architecture logits; both
  are updated from the same batch.
* ``alternate`` (DARTS protocol): an architecture step on a batch from a
  held-out half of the training split, then a weight step on a batch of the
  other half, each with its own sampled child.  First order by default; the
  second-order gradient is in ``unrolled.py``.
* a weight step of a fixed child (random search), a batch-norm
  re-estimation pass, and evaluation with sampled or fixed edge weights.

Steps run in one of two ways (``SearchConfig.execution``), chosen once when
the Searcher is made: ``graph_steps.GraphSteps`` (each step one compiled
``tf.function`` of the whole supernet) or ``host_steps.HostSteps`` (only the
sampled child's ops run, eagerly, through shared compiled layer functions).
The second-order step stays compiled in both.

It is written against the supernet interface of ``datanas.spaces.base``
and a ``datanas.tasks`` Task only.  Every random draw of a step is a pure
function of (seed, step counter), so a run is reproducible and all replicas
of a step sample the same child.
"""

import keras
import tensorflow as tf

from datanas.core.layer_functions import LayerFunctions

from datanas.engine.loop import RunState
from datanas.engine.steps import (all_reduce_sum, apply_update, batch_norm_statistics,
                                  guarded_sums, reduce_sums, scaled_loss,
                                  sync_replica_statistics)
from datanas.searching.graph_steps import GraphSteps
from datanas.searching.host_steps import HostSteps
from datanas.searching.methods import DEFAULT_ARCH_WEIGHT_DECAY
from datanas.searching.unrolled import unrolled_arch_gradients
from datanas.tasks import default_task

__all__ = ["Searcher", "STREAM_WEIGHTS", "STREAM_ARCH", "HOST_AUTO_MAX_STEPS",
           "resolve_execution"]

# Stream ids folded into the per-step seed so different draws never collide.
STREAM_WEIGHTS, STREAM_ARCH, STREAM_EVAL = 0, 1, 2


def _host_capable(strategy):
    """Whether host-driven steps run under `strategy`: one process driving its
    local devices (default, OneDevice, Mirrored).  TPUs run compiled steps
    only, and multi-worker collectives cannot all-reduce the eagerly computed
    gradients of a host step ("destinations can not be empty")."""
    local = (tf.distribute.OneDeviceStrategy, tf.distribute.MirroredStrategy)
    return (isinstance(strategy, local)
            or type(strategy).__name__ == "_DefaultDistributionStrategy")


#: "auto" runs host-driven steps for searches of at most this many steps.
#: Set from ``benchmarks/execution_break_even.py`` (the same cpu-preset search,
#: 4 cells, C=8, batch 64, full EGS gradient, run once host-driven and once
#: compiled on a quiet 2-core CPU; ``benchmarks/results/
#: execution_break_even_cpu_2core.json``): the compiled run pays 212 s before
#: its steps and 1.21 s a step, the host-driven one 58 s and 2.08 s, so the
#: host-driven search finishes first below 175 steps.  Host steps also hold
#: about half the memory.
HOST_AUTO_MAX_STEPS = 175


def resolve_execution(execution, model, strategy, total_steps=None):
    """"host" or "graph" for a config's `execution` ("auto", "host", "graph").

    "auto" is host when the supernet supports it, the strategy drives local
    devices only (``_host_capable``) and the run has at most
    `HOST_AUTO_MAX_STEPS` steps (unknown: host).
    """
    host_possible = getattr(model, "supports_host_execution", False)
    if execution == "host":
        if not host_possible:
            raise ValueError(f"execution='host' is not supported by {type(model).__name__} "
                             "(its forward pass is not host-driven); use execution='graph'.")
        if not _host_capable(strategy):
            raise ValueError(f"execution='host' runs under the default, OneDevice or Mirrored "
                             f"strategies, not {type(strategy).__name__} (TPUs and multi-worker "
                             f"collectives need compiled steps); use execution='graph' or "
                             f"'auto'.")
        return "host"
    if execution == "graph":
        return "graph"
    short = total_steps is None or total_steps <= HOST_AUTO_MAX_STEPS
    return "host" if host_possible and short and _host_capable(strategy) else "graph"


class Searcher:
    """Optimizers and compiled steps of one search.

    Create the supernet and the Searcher inside ``strategy.scope()`` (the
    Searcher enters the scope itself for what it creates).
    """

    def __init__(self, model, config, steps_per_epoch, strategy=None, global_batch_size=None,
                 task=None):
        if not model.built:
            raise ValueError("build the supernet (model.build(input_shape)) before searching.")
        task = task if task is not None else default_task(model)
        self.model, self.task, self.config = model, task, config
        self.statistics = batch_norm_statistics(model)   # averaged over replicas per update
        self.strategy = strategy or tf.distribute.get_strategy()
        self.steps_per_epoch = steps_per_epoch
        self.global_batch_size = global_batch_size
        total_steps = max(1, config.epochs * steps_per_epoch)
        names = list(task.train_metrics)
        if config.search_mode == "alternate":
            names += [f"arch_{name}" for name in task.train_metrics]
        with self.strategy.scope():
            schedule = keras.optimizers.schedules.CosineDecay(
                config.learning_rate, decay_steps=total_steps,
                alpha=config.learning_rate_min / config.learning_rate)
            self.weight_optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum,
                                                         name="weight_sgd")
            self.arch_optimizer = keras.optimizers.Adam(
                config.arch_learning_rate, beta_1=config.arch_beta_1, beta_2=config.arch_beta_2,
                name="arch_adam")
            self.weight_optimizer.build(model.network_variables)
            self.arch_optimizer.build(model.architecture_variables)
            self.state = RunState(names)
        self._seed = tf.constant(config.seed, tf.int64)
        # Eager callers (host steps, tests that drive `forward` directly)
        # sample a step's code through one small compiled function.
        self._sample_step_weights = tf.function(
            lambda seed: self.model.edge_weights(stochastic=True, seed=seed))
        self.sample_eval_weights = tf.function(self._sample_eval_weights)
        self.layer_functions = LayerFunctions()
        self.execution = resolve_execution(config.execution, model, self.strategy,
                                           total_steps=config.epochs * steps_per_epoch)
        # Chosen once: every step of this search runs the same way.
        steps = HostSteps if self.execution == "host" else GraphSteps
        self.steps = steps(self, stream_weights=STREAM_WEIGHTS, stream_arch=STREAM_ARCH)

    # -- the steps (graph_steps.py or host_steps.py) ------------------------
    def joint_step(self, batch):
        """DATA's joint step: weights and logits from one training batch."""
        return self.steps.joint(batch)

    def weight_step(self, batch):
        """A weight step of a sampled child."""
        return self.steps.weight(batch)

    def arch_step(self, batch):
        """First-order architecture step on a held-out batch (alternate mode)."""
        return self.steps.arch(batch)

    def fixed_weight_step(self, batch, edge_weights):
        """A weight step of the child given by fixed edge weights (random search)."""
        return self.steps.fixed_weight(batch, edge_weights)

    def recalibration_step(self, inputs, edge_weights):
        """A training-mode forward that moves batch-norm statistics, no update."""
        return self.steps.recalibration(inputs, edge_weights)

    def eval_step(self, batch, weights):
        """Evaluation sums of one batch under fixed or sampled edge weights."""
        return self.steps.evaluation(batch, weights)

    # -- pieces ------------------------------------------------------------
    @property
    def step(self):
        return self.state.step

    def step_seed(self, stream):
        """[2] int64 seed for this step and stream (same on every replica)."""
        return tf.stack([self._seed, self.state.step * 3 + stream])

    def forward(self, inputs, stream, training=True):
        if tf.executing_eagerly():
            weights = self._sample_step_weights(self.step_seed(stream))
        else:
            weights = self.model.edge_weights(stochastic=True, seed=self.step_seed(stream))
        return self.model.forward(inputs, weights, training=training)

    def replica_loss(self, targets, outputs):
        """Per-replica loss scaled by the global batch, and the step's sums.

        A supernet's ``architecture_penalty()`` (e.g. a resource budget),
        when it has one, is added once per step: each replica adds its share,
        since replica gradients are summed."""
        per_example = self.task.per_example_loss(targets, outputs)
        loss = scaled_loss(per_example, self.global_batch_size)
        penalty = getattr(self.model, "architecture_penalty", None)
        penalty = penalty() if penalty is not None else None
        if penalty is not None:
            loss += tf.cast(penalty, loss.dtype) / self.strategy.num_replicas_in_sync
        return loss, self.task.train_sums(targets, outputs, per_example)

    def apply_weight_gradients(self, grads, summed=False):
        apply_update(self.weight_optimizer, grads, self.model.network_variables,
                     clip_norm=self.config.grad_clip, weight_decay=self.config.weight_decay,
                     summed=summed)
        sync_replica_statistics(self.statistics)

    def apply_arch_gradients(self, grads, summed=False):
        # The architecture step's training-mode forward moved batch-norm
        # statistics too (as in DARTS): the replicas' copies are averaged.
        decay = self.config.arch_weight_decay
        apply_update(self.arch_optimizer, grads, self.model.architecture_variables,
                     weight_decay=DEFAULT_ARCH_WEIGHT_DECAY if decay is None else decay,
                     summed=summed)
        sync_replica_statistics(self.statistics)

    def summed_gradients(self, grads, variables):
        return all_reduce_sum(grads, variables)

    # -- replica functions -------------------------------------------------
    def _unrolled_arch_replica(self, arch_batch, train_batch):
        arch_grads, sums, count = unrolled_arch_gradients(self, arch_batch, train_batch,
                                                          STREAM_ARCH)
        self.apply_arch_gradients(arch_grads, summed=True)
        return sums, count

    def means(self, per_replica, prefix=""):
        sums, count = per_replica
        names = sorted(sums)
        reduced = reduce_sums(self.strategy, [sums[n] for n in names] + [count])
        count = tf.cast(reduced[-1], tf.float32)
        return {prefix + n: value / count for n, value in zip(names, reduced[:-1])}

    def unrolled_arch_step(self, arch_batch, train_batch):
        """Second-order architecture step (compiled in both executions)."""
        return self.steps.unrolled_arch(arch_batch, train_batch)

    def unrolled_arch_update(self, arch_batch, train_batch):
        """Second-order architecture step (see unrolled.py)."""
        return self.means(self.strategy.run(self._unrolled_arch_replica,
                                             (arch_batch, train_batch)), "arch_")

    def advance(self, metrics):
        self.state.step.assign_add(1)
        return metrics

    def search_step(self, train_batch, arch_batch=None):
        """The configured step: joint, or an architecture step on the held-out
        batch (first or second order) followed by a weight step."""
        if arch_batch is None:
            return self.joint_step(train_batch)
        if self.config.unrolled:
            metrics = self.unrolled_arch_step(arch_batch, train_batch)
        else:
            metrics = self.arch_step(arch_batch)
        return {**metrics, **self.weight_step(train_batch)}

    def eval_replica(self, batch, weights):
        inputs, targets = self.task.unpack(batch)
        keys = self.task.eval_names

        def sums():
            result = self.task.eval_sums(targets, self.model.forward(inputs, weights,
                                                                     training=False))
            return tuple(result[k] for k in keys)

        count = self.task.count(targets)
        return guarded_sums(count, sums, tuple(tf.constant(0.0) for _ in keys),
                            guard=self.task.empty_batches_possible), count

    def _sample_eval_weights(self, batch_index):
        seed = tf.stack([self._seed + 7919, tf.cast(batch_index, tf.int64)])
        return self.model.edge_weights(stochastic=True, seed=seed)

    def use_batch_signature(self, train_spec, arch_spec=None):
        """Compiles the training steps for batches of these specs (a
        distributed dataset's ``element_spec``), instead of for the first
        batch's shapes.

        With a variable dimension (e.g. BPTT windows of varying length) the
        steps would otherwise be traced for the first batch's shape and
        relaxed later, so a run resumed mid-epoch (a different first batch)
        would run other graphs than an uninterrupted one and drift by float
        rounding.  With the dataset's spec every process runs the same graph.

        Host-driven steps are not compiled as a whole (their shared layer
        functions are traced per exact input shape, the same in every
        process), so they are kept.
        """
        self.steps.use_batch_signature(train_spec, arch_spec)

    # -- eager helpers -----------------------------------------------------
    def distribute(self, dataset_fn):
        """Distributes a pipeline built by `dataset_fn(input_context)`."""
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def evaluate(self, dataset, weights=None):
        """Task metrics on a distributed `dataset` (BN in inference mode).

        With `weights=None` each batch runs a child sampled with a fixed
        per-batch seed (so epochs are comparable); otherwise the given fixed
        edge weights (e.g. a derived genotype) are used.
        """
        keys = self.task.eval_names
        totals = dict.fromkeys(keys, 0.0)
        count = 0
        eval_step = None
        for index, batch in enumerate(dataset):
            batch_weights = weights
            if batch_weights is None:
                batch_weights = self.sample_eval_weights(tf.constant(index, tf.int64))
            if eval_step is None:
                eval_step = self.steps.evaluation_for(dataset, batch_weights)
            *values, batch_count = eval_step(batch, batch_weights)
            for key, value in zip(keys, values):
                totals[key] += float(value)
            count += int(batch_count)
        return self.task.split_metrics(totals, count)

    def recalibrate_batch_norm(self, dataset, edge_weights, batches):
        """Re-estimates batch-norm moving statistics for one fixed child.

        Supernet statistics average over many sampled children, so they are
        stale for any single one; `batches` training batches (no weight
        update) bring them to the child's own statistics.
        """
        for index, batch in enumerate(dataset):
            if index >= batches:
                break
            self.recalibration_step(self.task.unpack(batch)[0], edge_weights)

    def snapshot_state(self):
        """Values of every model variable (weights, BN statistics, logits)."""
        return [v.numpy().copy() for v in self.model.weights]

    def restore_snapshot(self, snapshot):
        for variable, value in zip(self.model.weights, snapshot):
            variable.assign(value)

    def restore_fresh_state(self, snapshot):
        """Back to `snapshot` with a fresh weight optimizer and run state, so
        the next training run starts exactly like the first (random search)."""
        self.restore_snapshot(snapshot)
        self.weight_optimizer.iterations.assign(0)
        for variable in self.weight_optimizer.momentums:
            variable.assign(tf.zeros_like(variable))
        self.state.reset()
