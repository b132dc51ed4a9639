"""Joint architecture search with the Ensemble Gumbel-Softmax (paper Eq. 6).

``Searcher`` owns the two optimizers and the compiled steps:

* ``joint`` (DATA's single-level optimisation): one forward/backward pass of
  a sampled child on a training batch gives gradients for both the network
  weights and the architecture logits; both are updated from the same batch.
* ``alternate`` (DARTS protocol): an architecture step on a batch from a
  held-out half of the training split, then a weight step on a batch of the
  other half, each with its own sampled child.  First order by default; with
  ``unrolled=True`` the architecture gradient is DARTS' second-order one,
  taken at the one-step-unrolled weights w' = w - xi * (momentum + grad +
  decay) with the Hessian-vector product by central finite differences
  (Liu et al. 2019, Eq. 7-8).  The unrolled weights are plain tensors fed
  through ``keras.StatelessScope``, so no variable is overwritten and the
  step runs unchanged under a distribution strategy.

Weights: SGD, momentum 0.9, cosine learning rate 0.025 -> 0.001, L2 weight
decay 3e-4 added to the clipped gradient (global norm 5).  Architecture
logits: Adam 3e-4, betas (0.5, 0.999), L2 weight decay 1e-3.  The EGS
temperature anneals linearly over epochs (5 -> 1 by default).

Every random draw of a step is a pure function of (seed, step counter), so
a run is reproducible and all replicas of a step sample the same child.
"""

import dataclasses
import json
import math
import os
import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from datanas.checkpointing import model_variables
from datanas.derivation import (DERIVATION_RULES, architecture_probabilities, derive_genotype,
                                genotype_to_weights, logits_of)
from datanas.distribute import num_input_pipelines, run_directory
from datanas.genotypes import save_genotype
from datanas.progress import epoch_progbar
from datanas.run_files import append_jsonl, read_jsonl, write_json_atomic

__all__ = ["SEARCH_MODES", "SearchConfig", "Searcher", "SearchResult", "SearchPreempted",
           "make_searcher", "write_search_config", "run_search", "temperature_at"]

SEARCH_MODES = ("joint", "alternate")

# Stream ids folded into the per-step seed so different draws never collide.
_STREAM_WEIGHTS, _STREAM_ARCH, _STREAM_EVAL = 0, 1, 2


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
    arch_weight_decay: float = 1e-3
    initial_temperature: float = 5.0
    final_temperature: float = 1.0
    search_mode: str = "joint"
    derivation: str = "sample"
    unrolled: bool = False
    # Finite-difference step of the Hessian-vector product, as a fraction of
    # the held-out gradient's norm (DARTS: 0.01).
    hessian_radius: float = 0.01
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}.")
        for name in ("learning_rate", "arch_learning_rate", "initial_temperature",
                     "final_temperature", "grad_clip", "hessian_radius"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        for name in ("learning_rate_min", "weight_decay", "arch_weight_decay"):
            value = getattr(self, name)
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
        if self.unrolled and self.search_mode != "alternate":
            raise ValueError("unrolled (second-order) architecture steps need "
                             "search_mode='alternate' (a held-out architecture split); got "
                             f"search_mode={self.search_mode!r}.")
        if self.derivation not in DERIVATION_RULES:
            raise ValueError(f"derivation must be one of {', '.join(DERIVATION_RULES)}; "
                             f"got {self.derivation!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}.")


def temperature_at(config, epoch):
    """Linear annealing from initial to final temperature over the epochs."""
    if config.epochs == 1:
        return config.final_temperature
    fraction = min(max(epoch / (config.epochs - 1), 0.0), 1.0)
    return config.initial_temperature + fraction * (config.final_temperature - config.initial_temperature)


class Searcher:
    """Optimizers, step counter and compiled (distributed) steps of one search.

    Create the model and the Searcher inside ``strategy.scope()`` (the
    Searcher enters the scope itself for what it creates).  With the default
    strategy everything runs on one device.
    """

    def __init__(self, model, config, steps_per_epoch, strategy=None, global_batch_size=None):
        if not model.built:
            raise ValueError("build the SearchNetwork (model.build(input_shape)) before searching.")
        self.model, self.config = model, config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.steps_per_epoch = steps_per_epoch
        self.global_batch_size = global_batch_size
        total_steps = max(1, config.epochs * steps_per_epoch)
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
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="search_step")
            # Sums of the running epoch's metrics (checkpointed, for exact resume).
            self.epoch_sums = {name: tf.Variable(0.0, dtype=tf.float64, trainable=False, name=name)
                               for name in ("loss", "accuracy", "arch_loss", "arch_accuracy",
                                            "batches")}
        self._seed = tf.constant(config.seed, tf.int64)
        self.joint_step = tf.function(self._joint_step)
        self.arch_step = tf.function(self._arch_step)
        self.weight_step = tf.function(self._weight_step)
        self.unrolled_arch_step = tf.function(self._unrolled_arch_step)
        # Edge weights are an input, so every fixed child shares one graph.
        self.fixed_weight_step = tf.function(self._fixed_weight_step)
        self.recalibration_step = tf.function(self._recalibration_step)
        # Edge weights are an input of the evaluation graph, so sampled children
        # and a fixed derived child share one traced graph.
        self.eval_step = tf.function(self._eval_step)
        self.sample_eval_weights = tf.function(self._sample_eval_weights)

    # -- pieces ------------------------------------------------------------
    def step_seed(self, stream):
        """[2] int64 seed for this step and stream (same on every replica)."""
        return tf.stack([self._seed, self.step * 3 + stream])

    def _per_example(self, labels, logits):
        labels = tf.cast(labels, tf.int32)
        losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels),
                          tf.float32)
        return losses, correct

    def _replica_loss(self, labels, logits):
        """Per-replica loss scaled by the global batch, and the correct count."""
        losses, correct = self._per_example(labels, logits)
        global_batch = self.global_batch_size or tf.shape(labels)[0] * \
            self.strategy.num_replicas_in_sync
        return tf.nn.compute_average_loss(losses, global_batch_size=global_batch), \
            tf.reduce_sum(correct)

    def _summed_gradients(self, grads, variables):
        """All-reduces (sums) per-replica gradients; None becomes zeros."""
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        context = tf.distribute.get_replica_context()
        if context is not None and self.strategy.num_replicas_in_sync > 1:
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        return grads

    def _apply(self, optimizer, grads, variables):
        # Keras sums gradients across replicas again inside apply_gradients;
        # the processed (already global) gradients are divided by the
        # replica count so that sum gives them back exactly.
        replicas = self.strategy.num_replicas_in_sync
        if replicas > 1:
            grads = [g / replicas for g in grads]
        optimizer.apply_gradients(zip(grads, variables))

    def _apply_weight_gradients(self, grads):
        variables = self.model.network_variables
        grads = self._summed_gradients(grads, variables)
        grads, _ = tf.clip_by_global_norm(grads, self.config.grad_clip)
        grads = [g + self.config.weight_decay * v for g, v in zip(grads, variables)]
        self._apply(self.weight_optimizer, grads, variables)

    def _apply_arch_gradients(self, grads, summed=False):
        variables = self.model.architecture_variables
        if not summed:
            grads = self._summed_gradients(grads, variables)
        grads = [g + self.config.arch_weight_decay * v for g, v in zip(grads, variables)]
        self._apply(self.arch_optimizer, grads, variables)

    def _forward(self, images, stream, training=True):
        weights = self.model.edge_weights(stochastic=True, seed=self.step_seed(stream))
        return self.model.forward(images, weights, training=training)

    # -- replica functions -------------------------------------------------
    def _replica_update(self, images, labels, stream, update_weights, update_arch):
        """Forward/backward of one sampled child; updates the chosen variable sets."""
        net_vars = self.model.network_variables if update_weights else []
        arch_vars = self.model.architecture_variables if update_arch else []
        with tf.GradientTape() as tape:
            loss, correct = self._replica_loss(labels, self._forward(images, stream))
        grads = tape.gradient(loss, net_vars + arch_vars)
        if update_weights:
            self._apply_weight_gradients(grads[:len(net_vars)])
        if update_arch:
            self._apply_arch_gradients(grads[len(net_vars):])
        return loss, correct, tf.shape(labels)[0]

    def _loss_at(self, weight_values, images, labels, stream):
        """Replica loss with the network weights replaced by `weight_values`."""
        mapping = list(zip(self.model.network_variables, weight_values))
        with keras.StatelessScope(state_mapping=mapping):
            # Batch-norm statistic updates stay inside the scope (discarded).
            return self._replica_loss(labels, self._forward(images, stream))

    def unrolled_arch_gradients(self, arch_images, arch_labels, train_images, train_labels):
        """Second-order DARTS architecture gradient (finite-difference Hessian).

        Returns (replica-summed gradients of the architecture variables, the
        replica's scaled held-out loss, its correct count).  Runs in a replica
        context (or outside any strategy).  Every pass runs on weight tensors
        inside a StatelessScope, so neither the weights nor the batch-norm
        statistics change; only the architecture step's update does.
        """
        net_vars = self.model.network_variables
        arch_vars = self.model.architecture_variables
        stream = _STREAM_ARCH   # one child for every pass of this step
        current = [tf.convert_to_tensor(v) for v in net_vars]
        with tf.GradientTape() as tape:
            tape.watch(current)
            train_loss, _ = self._loss_at(current, train_images, train_labels, stream)
        grads = self._summed_gradients(tape.gradient(train_loss, current), net_vars)
        xi = self.weight_optimizer.learning_rate
        momentum = self.config.momentum
        # Keras SGD keeps m = momentum * m - lr * grad and adds m to the weight.
        velocities = self.weight_optimizer.momentums if momentum else [None] * len(net_vars)
        unrolled = []
        for value, grad, velocity in zip(current, grads, velocities):
            step = -tf.cast(xi, value.dtype) * (grad + self.config.weight_decay * value)
            if velocity is not None:
                step += momentum * tf.convert_to_tensor(velocity)
            unrolled.append(value + step)
        with tf.GradientTape() as tape:
            tape.watch(unrolled)
            loss, correct = self._loss_at(unrolled, arch_images, arch_labels, stream)
        grads = tape.gradient(loss, unrolled + arch_vars)
        weight_grads = self._summed_gradients(grads[:len(net_vars)], net_vars)
        arch_grads = self._summed_gradients(grads[len(net_vars):], arch_vars)
        radius = self.config.hessian_radius / (tf.cast(tf.linalg.global_norm(weight_grads), tf.float64) + 1e-12)

        def train_arch_grads(sign):
            values = [v + tf.cast(sign * radius, d.dtype) * d
                      for v, d in zip(current, weight_grads)]
            with tf.GradientTape() as inner:
                shifted_loss, _ = self._loss_at(values, train_images, train_labels, stream)
            return self._summed_gradients(inner.gradient(shifted_loss, arch_vars), arch_vars)

        plus, minus = train_arch_grads(1.0), train_arch_grads(-1.0)
        arch_grads = [g - tf.cast(tf.cast(xi, tf.float64) / (2.0 * radius), g.dtype) * (p - m)
                      for g, p, m in zip(arch_grads, plus, minus)]
        return arch_grads, loss, correct

    def _unrolled_arch_replica(self, arch_images, arch_labels, train_images, train_labels):
        arch_grads, loss, correct = self.unrolled_arch_gradients(arch_images, arch_labels,
                                                                 train_images, train_labels)
        self._apply_arch_gradients(arch_grads, summed=True)
        return loss, correct, tf.shape(arch_labels)[0]

    def _fixed_replica(self, images, labels, edge_weights):
        """Weight update of the child given by fixed edge weights (random search)."""
        net_vars = self.model.network_variables
        with tf.GradientTape() as tape:
            loss, correct = self._replica_loss(
                labels, self.model.forward(images, edge_weights, training=True))
        self._apply_weight_gradients(tape.gradient(loss, net_vars))
        return loss, correct, tf.shape(labels)[0]

    def _reduce(self, per_replica):
        loss, correct, count = (self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                                for v in per_replica)
        return loss, correct / tf.cast(count, tf.float32)

    def _accumulate(self, prefix, loss, accuracy):
        self.epoch_sums[prefix + "loss"].assign_add(tf.cast(loss, tf.float64))
        self.epoch_sums[prefix + "accuracy"].assign_add(tf.cast(accuracy, tf.float64))

    # -- compiled steps (cross-replica) ------------------------------------
    def _run_update(self, images, labels, stream, update_weights, update_arch):
        per_replica = self.strategy.run(
            self._replica_update, (images, labels),
            dict(stream=stream, update_weights=update_weights, update_arch=update_arch))
        return self._reduce(per_replica)

    def _weight_metrics(self, loss, accuracy):
        self._accumulate("", loss, accuracy)
        self.epoch_sums["batches"].assign_add(1.0)
        self.step.assign_add(1)
        return {"loss": loss, "accuracy": accuracy}

    def _joint_step(self, images, labels):
        return self._weight_metrics(*self._run_update(images, labels, _STREAM_WEIGHTS, True, True))

    def _weight_step(self, images, labels):
        return self._weight_metrics(*self._run_update(images, labels, _STREAM_WEIGHTS, True,
                                                      False))

    def _fixed_weight_step(self, images, labels, edge_weights):
        return self._weight_metrics(*self._reduce(self.strategy.run(
            self._fixed_replica, (images, labels, edge_weights))))

    def _recalibration_step(self, images, edge_weights):
        def replica(images, edge_weights):
            # Training-mode forward: batch-norm layers update their moving
            # statistics from this child's activations; no gradient is taken.
            self.model.forward(images, edge_weights, training=True)
            return tf.shape(images)[0]
        return self.strategy.run(replica, (images, edge_weights))

    def recalibrate_batch_norm(self, dataset, edge_weights, batches):
        """Re-estimates batch-norm moving statistics for one fixed child.

        Supernet statistics average over many sampled children, so they are
        stale for any single one; `batches` training batches (no weight
        update) bring them to the child's own statistics.
        """
        for index, (images, _) in enumerate(dataset):
            if index >= batches:
                break
            self.recalibration_step(images, edge_weights)

    def _arch_metrics(self, loss, accuracy):
        self._accumulate("arch_", loss, accuracy)
        return {"arch_loss": loss, "arch_accuracy": accuracy}

    def _arch_step(self, images, labels):
        return self._arch_metrics(*self._run_update(images, labels, _STREAM_ARCH, False, True))

    def _unrolled_arch_step(self, arch_images, arch_labels, train_images, train_labels):
        return self._arch_metrics(*self._reduce(self.strategy.run(
            self._unrolled_arch_replica, (arch_images, arch_labels, train_images, train_labels))))

    def _eval_replica(self, images, labels, weights):
        def sums():
            losses, correct = self._per_example(labels, self.model.forward(images, weights,
                                                                           training=False))
            return tf.reduce_sum(losses), tf.reduce_sum(correct)

        # The last evaluation batch can leave some replicas with 0 examples.
        loss, correct = tf.cond(tf.shape(labels)[0] > 0, sums, lambda: (0.0, 0.0))
        return loss, correct, tf.shape(labels)[0]

    def _eval_step(self, images, labels, weights):
        per_replica = self.strategy.run(self._eval_replica, (images, labels, weights))
        return tuple(self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                     for v in per_replica)

    def _sample_eval_weights(self, batch_index):
        seed = tf.stack([self._seed + 7919, tf.cast(batch_index, tf.int64)])
        return self.model.edge_weights(stochastic=True, seed=seed)

    # -- loops -------------------------------------------------------------
    def distribute(self, dataset_fn):
        """Distributes a pipeline built by `dataset_fn(input_context)`."""
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def epoch_metrics(self):
        batches = max(float(self.epoch_sums["batches"].numpy()), 1.0)
        out = {"train_loss": self.epoch_sums["loss"].numpy() / batches,
               "train_accuracy": self.epoch_sums["accuracy"].numpy() / batches}
        if self.config.search_mode == "alternate":
            out.update({"train_arch_loss": self.epoch_sums["arch_loss"].numpy() / batches,
                        "train_arch_accuracy": self.epoch_sums["arch_accuracy"].numpy() / batches})
        return {k: float(v) for k, v in out.items()}

    def reset_epoch_metrics(self):
        for variable in self.epoch_sums.values():
            variable.assign(0.0)

    def snapshot_state(self):
        """Values of every model variable (weights, BN statistics, logits)."""
        return [v.numpy().copy() for v in self.model.weights]

    def restore_fresh_state(self, snapshot):
        """Back to `snapshot` with a fresh weight optimizer and step 0, so the
        next training run starts exactly like the first (random search)."""
        for variable, value in zip(self.model.weights, snapshot):
            variable.assign(value)
        self.weight_optimizer.iterations.assign(0)
        for variable in self.weight_optimizer.momentums:
            variable.assign(tf.zeros_like(variable))
        self.step.assign(0)
        self.reset_epoch_metrics()

    def train_batches(self, epoch, inputs, after_step=None, progbar=None, edge_weights=None):
        """Runs the rest of `epoch`, resuming after the steps already done.

        With `edge_weights` only the network weights of that fixed child are
        trained (random search); otherwise the configured search steps run.

        The epoch's example order is a pure function of (seed, epoch), so
        skipping the finished steps' batches continues exactly where an
        interrupted run stopped.
        """
        done = int(self.step.numpy()) - epoch * self.steps_per_epoch
        remaining = self.steps_per_epoch - done

        def pipeline(make):
            def dataset_fn(context):
                per_pipeline = max(context.num_replicas_in_sync // context.num_input_pipelines, 1)
                return make(epoch, context).skip(done * per_pipeline).take(remaining * per_pipeline)
            return self.distribute(dataset_fn)

        train = pipeline(inputs.train)
        batches = ((b, None) for b in train)
        if self.config.search_mode == "alternate" and edge_weights is None:
            batches = zip(train, pipeline(inputs.arch))
        count = done
        for (images, labels), arch_batch in batches:
            if edge_weights is not None:
                self.fixed_weight_step(images, labels, edge_weights)
            elif arch_batch is not None and self.config.unrolled:
                self.unrolled_arch_step(*arch_batch, images, labels)
                self.weight_step(images, labels)
            elif arch_batch is not None:
                self.arch_step(*arch_batch)
                self.weight_step(images, labels)
            else:
                self.joint_step(images, labels)
            count += 1
            if progbar is not None:
                progbar.update(count, values=[(k.replace("train_", ""), v)
                                              for k, v in self.epoch_metrics().items()])
            if after_step is not None:
                after_step()

    def evaluate(self, dataset, weights=None):
        """Mean loss/accuracy on a distributed `dataset` (BN in inference mode).

        With `weights=None` each batch runs a child sampled with a fixed
        per-batch seed (so epochs are comparable); otherwise the given
        fixed edge weights (e.g. a derived genotype) are used.
        """
        loss_sum = correct_sum = 0.0
        total = 0
        for index, (images, labels) in enumerate(dataset):
            batch_weights = weights
            if batch_weights is None:
                batch_weights = self.sample_eval_weights(tf.constant(index, tf.int64))
            loss, correct, count = self.eval_step(images, labels, batch_weights)
            loss_sum += float(loss)
            correct_sum += float(correct)
            total += int(count)
        return {"loss": loss_sum / max(total, 1), "accuracy": correct_sum / max(total, 1)}


@dataclasses.dataclass
class SearchResult:
    genotype: object
    genotypes: dict
    history: list
    final: dict


def _arch_entropy(model):
    """Mean entropy of the per-node (or per-edge) selection distributions."""
    entropies = []
    for variable in model.architecture_variables:
        logits = variable.numpy().astype(np.float64)
        if model.egs_scope == "node":
            logits = logits.reshape(1, -1)
        logits = logits - logits.max(axis=-1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        entropies.append(float(-(probs * np.log(probs + 1e-12)).sum(axis=-1).mean()))
    return float(np.mean(entropies))


class SearchPreempted(Exception):
    """Raised after a SIGTERM once the search state has been checkpointed."""


class _TerminationFlag:
    """Records SIGTERM (cluster preemption) instead of dying mid-step."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.raised = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _completed_history(metrics_path, epochs_completed):
    """Metrics of the epochs a checkpoint covers (drops lines written after it)."""
    history = [r for r in read_jsonl(metrics_path) if r["epoch"] <= epochs_completed]
    with open(metrics_path, "w") as handle:
        for record in history:
            handle.write(json.dumps(record) + "\n")
    return history


def _check_same_search(model_dir, model, config):
    """Refuses to resume a checkpoint written by a differently configured search."""
    path = os.path.join(model_dir, "search_config.json")
    if not os.path.exists(path):
        return
    with open(path) as handle:
        saved = json.load(handle)
    current = {"search": json.loads(json.dumps(dataclasses.asdict(config))),
               "model": json.loads(json.dumps(model.get_config()))}
    differences = []
    for section in ("search", "model"):
        before, now = saved.get(section, {}), current[section]
        for key in sorted(set(before) | set(now)):
            if key in ("temperature", "name", "trainable", "dtype", "epochs"):
                continue   # runtime state or extendable budget, not the search's identity
            if before.get(key) != now.get(key):
                differences.append(f"{key}: checkpoint {before.get(key)!r}, now {now.get(key)!r}")
    if differences:
        raise ValueError(f"{model_dir} holds a checkpoint of a different search ("
                         + "; ".join(differences) + "). Use a new --model_dir, or rerun with "
                         "the original settings to resume.")


def make_searcher(model, inputs, config, strategy):
    """A Searcher whose epoch is what every input pipeline of `strategy` can feed."""
    steps_per_epoch = inputs.distributed_steps_per_epoch(num_input_pipelines(strategy),
                                                         strategy.num_replicas_in_sync)
    if steps_per_epoch < 1:
        raise ValueError(f"{inputs.sizes()['train']} training images give no full batch of "
                         f"{inputs.batch_size} per step; raise --train_size or lower --batch_size.")
    return Searcher(model, config, steps_per_epoch, strategy=strategy,
                    global_batch_size=inputs.batch_size)


def write_search_config(model_dir, searcher, inputs, search_settings, metadata):
    """search_config.json: settings, model config, data sizes, distribution."""
    strategy = searcher.strategy
    write_json_atomic(os.path.join(model_dir, "search_config.json"), {
        "search": search_settings,
        "model": searcher.model.get_config(),
        "data": inputs.sizes(),
        "distribution": {"strategy": type(strategy).__name__,
                         "replicas": strategy.num_replicas_in_sync,
                         "steps_per_epoch": searcher.steps_per_epoch},
        "metadata": metadata or {},
    })


def run_search(model, inputs, config, model_dir, *, strategy=None, verbose=1, metadata=None,
               checkpoint_every_steps=200, bn_recalibration_batches=0):
    """Runs (or resumes) a whole search and writes its artifacts.

    Re-running with the same `model_dir` resumes from the last checkpoint,
    mid-epoch included, and ends with the same architecture as an
    uninterrupted run.  A SIGTERM checkpoints at the next step boundary and
    raises SearchPreempted.

    Writes into `model_dir` (workers other than the chief write into
    `model_dir/worker_<id>`): ``search_config.json``, ``metrics.jsonl`` (one
    line per epoch), ``tensorboard/``, ``checkpoints/``, ``genotype.json``
    (rule ``config.derivation``) and ``genotype_<rule>.json`` for every rule,
    ``arch_probabilities.json`` and ``search_result.json``.

    The derived child is evaluated inside the supernet with the inherited
    weights (paper Table 8); with `bn_recalibration_batches` > 0 it is also
    evaluated after re-estimating batch-norm statistics on that many training
    batches (weights unchanged; the supernet's own statistics are restored).
    """
    strategy = strategy or tf.distribute.get_strategy()
    model_dir = run_directory(strategy, model_dir)
    searcher = make_searcher(model, inputs, config, strategy)
    steps_per_epoch = searcher.steps_per_epoch
    with strategy.scope():
        epochs_completed = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_completed")
    checkpoint = tf.train.Checkpoint(model=model, model_variables=model_variables(model),
                                     weight_optimizer=searcher.weight_optimizer,
                                     arch_optimizer=searcher.arch_optimizer, step=searcher.step,
                                     epochs_completed=epochs_completed, **searcher.epoch_sums)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, "checkpoints"),
                                         max_to_keep=2, step_counter=searcher.step)
    metrics_path = os.path.join(model_dir, "metrics.jsonl")
    history = []
    if manager.latest_checkpoint:
        _check_same_search(model_dir, model, config)
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        history = _completed_history(metrics_path, int(epochs_completed.numpy()))
        if verbose:
            print(f"Resuming from {manager.latest_checkpoint}: step {int(searcher.step.numpy())}, "
                  f"{int(epochs_completed.numpy())} epoch(s) completed.", flush=True)
    elif os.path.exists(metrics_path):
        os.unlink(metrics_path)
    write_search_config(model_dir, searcher, inputs, dataclasses.asdict(config), metadata)
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "tensorboard"))
    valid_data = searcher.distribute(inputs.validation)
    started = time.time()
    with _TerminationFlag() as terminated:
        def after_step():
            step = int(searcher.step.numpy())
            if terminated.raised:
                manager.save(checkpoint_number=step)
                raise SearchPreempted(f"SIGTERM: checkpoint saved at step {step} in {model_dir}; "
                                      "rerun the same command to resume.")
            if checkpoint_every_steps and step % checkpoint_every_steps == 0:
                manager.save(checkpoint_number=step)
                if verbose > 1:
                    print(f"checkpoint saved at step {step}", flush=True)

        for epoch in range(int(epochs_completed.numpy()), config.epochs):
            temperature = temperature_at(config, epoch)
            model.egs.set_temperature(temperature)
            if int(searcher.step.numpy()) == epoch * steps_per_epoch:
                searcher.reset_epoch_metrics()
            if verbose:
                print(f"Epoch {epoch + 1}/{config.epochs} (temperature {temperature:.3f})",
                      flush=True)
            progbar = epoch_progbar(steps_per_epoch, verbose)
            epoch_start = time.time()
            searcher.train_batches(epoch, inputs, after_step=after_step, progbar=progbar)
            valid = searcher.evaluate(valid_data)
            record = {"epoch": epoch + 1, "temperature": temperature,
                      "learning_rate": float(searcher.weight_optimizer.learning_rate),
                      **searcher.epoch_metrics(),
                      "valid_loss": valid["loss"], "valid_accuracy": valid["accuracy"],
                      "arch_entropy": _arch_entropy(model),
                      "epoch_seconds": time.time() - epoch_start}
            history.append(record)
            append_jsonl(metrics_path, record)
            epochs_completed.assign(epoch + 1)
            manager.save(checkpoint_number=int(searcher.step.numpy()))
            with writer.as_default(step=epoch + 1):
                for key, value in record.items():
                    if key != "epoch":
                        tf.summary.scalar(key, value)
            if verbose:
                print(f"  valid_accuracy={valid['accuracy']:.4f} valid_loss={valid['loss']:.4f} "
                      f"arch_entropy={record['arch_entropy']:.3f}", flush=True)
    writer.flush()

    logits = logits_of(model)
    common = dict(scope=model.egs_scope, num_samples=model.num_samples,
                  primitives=model.primitives, seed=config.seed)
    genotypes = {rule: derive_genotype(logits, rule=rule, **common) for rule in DERIVATION_RULES}
    for rule, genotype in genotypes.items():
        save_genotype(genotype, os.path.join(model_dir, f"genotype_{rule}.json"))
    genotype = genotypes[config.derivation]
    save_genotype(genotype, os.path.join(model_dir, "genotype.json"))
    write_json_atomic(os.path.join(model_dir, "arch_probabilities.json"),
                      architecture_probabilities(logits, model.egs_scope, model.num_samples,
                                                 model.primitives))
    child_weights = genotype_to_weights(genotype, model.primitives, model.num_nodes)
    child = searcher.evaluate(valid_data, child_weights)
    recalibrated = None
    if bn_recalibration_batches:
        supernet_state = searcher.snapshot_state()
        train = searcher.distribute(lambda context: inputs.train(config.epochs, context))
        searcher.recalibrate_batch_norm(train, child_weights, bn_recalibration_batches)
        recalibrated = searcher.evaluate(valid_data, child_weights)["accuracy"]
        for variable, value in zip(model.weights, supernet_state):
            variable.assign(value)
    final = {
        "derivation": config.derivation,
        "supernet_valid_accuracy": history[-1]["valid_accuracy"] if history else None,
        "child_valid_accuracy_inherited_weights": child["accuracy"],
        "child_valid_accuracy_recalibrated_bn": recalibrated,
        "bn_recalibration_batches": bn_recalibration_batches,
        "skip_connects": {kind: genotype.num_skip_connects(kind) for kind in ("normal", "reduce")},
        "op_counts": genotype.op_counts(),
        "search_seconds_this_process": time.time() - started,
        "steps": int(searcher.step.numpy()),
    }
    write_json_atomic(os.path.join(model_dir, "search_result.json"), final)
    if verbose:
        print(genotype.summary())
        print(f"skip_connects: normal={final['skip_connects']['normal']} "
              f"reduce={final['skip_connects']['reduce']}; derived child (inherited weights) "
              f"valid_accuracy={child['accuracy']:.4f}; genotype written to "
              f"{os.path.join(model_dir, 'genotype.json')}", flush=True)
    return SearchResult(genotype=genotype, genotypes=genotypes, history=history, final=final)
