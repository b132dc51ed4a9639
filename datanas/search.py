"""Joint architecture search with the Ensemble Gumbel-Softmax (paper Eq. 6).

``Searcher`` owns the two optimizers and the compiled steps:

* ``joint`` (DATA's single-level optimisation): one forward/backward pass of
  a sampled child on a training batch gives gradients for both the network
  weights and the architecture logits; both are updated from the same batch.
* ``alternate`` (first-order DARTS protocol): an architecture step on a batch
  from a held-out half of the training split, then a weight step on a batch
  of the other half, each with its own sampled child.

Weights: SGD, momentum 0.9, cosine learning rate 0.025 -> 0.001, L2 weight
decay 3e-4 added to the clipped gradient (global norm 5).  Architecture
logits: Adam 3e-4, betas (0.5, 0.999), L2 weight decay 1e-3.  The EGS
temperature anneals linearly over epochs (5 -> 1 by default).

Every random draw of a step is a pure function of (seed, step counter), so
a run is reproducible and all replicas of a step sample the same child.
"""

import dataclasses
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from datanas.derivation import (DERIVATION_RULES, architecture_probabilities, derive_genotype,
                                genotype_to_weights, logits_of)
from datanas.genotypes import save_genotype
from datanas.run_files import append_jsonl, write_json_atomic

__all__ = ["SEARCH_MODES", "SearchConfig", "Searcher", "SearchResult", "run_search",
           "temperature_at"]

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
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}.")
        for name in ("learning_rate", "arch_learning_rate", "initial_temperature",
                     "final_temperature", "grad_clip"):
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
    """Optimizers and compiled train/eval steps of one search."""

    def __init__(self, model, config, steps_per_epoch):
        if not model.built:
            raise ValueError("build the SearchNetwork (model.build(input_shape)) before searching.")
        self.model, self.config = model, config
        total_steps = max(1, config.epochs * steps_per_epoch)
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
        self._seed = tf.constant(config.seed, tf.int64)
        self.joint_step = tf.function(self._joint_step)
        self.arch_step = tf.function(self._arch_step)
        self.weight_step = tf.function(self._weight_step)
        self.eval_step = tf.function(self._eval_step)
        self.fixed_eval_step = tf.function(self._fixed_eval_step)

    # -- pieces ------------------------------------------------------------
    def step_seed(self, stream):
        """[2] int64 seed for this step and stream (same on every replica)."""
        return tf.stack([self._seed, self.step * 3 + stream])

    @staticmethod
    def _loss_and_accuracy(labels, logits):
        labels = tf.cast(labels, tf.int32)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
        correct = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
        return loss, tf.reduce_mean(tf.cast(correct, tf.float32))

    def _apply_weight_gradients(self, grads):
        variables = self.model.network_variables
        grads, _ = tf.clip_by_global_norm(grads, self.config.grad_clip)
        grads = [g + self.config.weight_decay * v for g, v in zip(grads, variables)]
        self.weight_optimizer.apply_gradients(zip(grads, variables))

    def _apply_arch_gradients(self, grads):
        variables = self.model.architecture_variables
        grads = [g + self.config.arch_weight_decay * v for g, v in zip(grads, variables)]
        self.arch_optimizer.apply_gradients(zip(grads, variables))

    def _forward(self, images, stream, training=True):
        weights = self.model.edge_weights(stochastic=True, seed=self.step_seed(stream))
        return self.model.forward(images, weights, training=training)

    # -- steps -------------------------------------------------------------
    def _joint_step(self, images, labels):
        net_vars, arch_vars = self.model.network_variables, self.model.architecture_variables
        with tf.GradientTape() as tape:
            logits = self._forward(images, _STREAM_WEIGHTS)
            loss, accuracy = self._loss_and_accuracy(labels, logits)
        grads = tape.gradient(loss, net_vars + arch_vars)
        self._apply_weight_gradients(grads[:len(net_vars)])
        self._apply_arch_gradients(grads[len(net_vars):])
        self.step.assign_add(1)
        return {"loss": loss, "accuracy": accuracy}

    def _arch_step(self, images, labels):
        arch_vars = self.model.architecture_variables
        with tf.GradientTape() as tape:
            logits = self._forward(images, _STREAM_ARCH)
            loss, accuracy = self._loss_and_accuracy(labels, logits)
        self._apply_arch_gradients(tape.gradient(loss, arch_vars))
        return {"arch_loss": loss, "arch_accuracy": accuracy}

    def _weight_step(self, images, labels):
        net_vars = self.model.network_variables
        with tf.GradientTape() as tape:
            logits = self._forward(images, _STREAM_WEIGHTS)
            loss, accuracy = self._loss_and_accuracy(labels, logits)
        self._apply_weight_gradients(tape.gradient(loss, net_vars))
        self.step.assign_add(1)
        return {"loss": loss, "accuracy": accuracy}

    def _eval_step(self, images, labels, batch_index):
        seed = tf.stack([self._seed + 7919, tf.cast(batch_index, tf.int64)])
        weights = self.model.edge_weights(stochastic=True, seed=seed)
        return self._loss_and_accuracy(labels, self.model.forward(images, weights, training=False))

    def _fixed_eval_step(self, images, labels, weights):
        return self._loss_and_accuracy(labels, self.model.forward(images, weights, training=False))

    # -- loops -------------------------------------------------------------
    def train_epoch(self, epoch, inputs, progbar=None):
        """One epoch; returns mean metrics."""
        totals, count = {}, 0
        train = inputs.train(epoch)
        arch = inputs.arch(epoch) if self.config.search_mode == "alternate" else None
        batches = zip(train, arch) if arch is not None else ((b, None) for b in train)
        for (images, labels), arch_batch in batches:
            values = {}
            if arch_batch is not None:
                values.update(self.arch_step(*arch_batch))
            values.update(self.weight_step(images, labels) if arch_batch is not None
                          else self.joint_step(images, labels))
            values = {k: float(v) for k, v in values.items()}
            for key, value in values.items():
                totals[key] = totals.get(key, 0.0) + value
            count += 1
            if progbar is not None:
                progbar.update(count, values=list(values.items()))
        return {k: v / max(count, 1) for k, v in totals.items()}

    def evaluate(self, dataset, weights=None):
        """Mean loss/accuracy on `dataset` (BN in inference mode).

        With `weights=None` each batch runs a child sampled with a fixed
        per-batch seed (so epochs are comparable); otherwise the given
        fixed edge weights (e.g. a derived genotype) are used.
        """
        loss_sum = correct_sum = 0.0
        total = 0
        for index, (images, labels) in enumerate(dataset):
            if weights is None:
                loss, accuracy = self.eval_step(images, labels, tf.constant(index, tf.int64))
            else:
                loss, accuracy = self.fixed_eval_step(images, labels, weights)
            size = int(labels.shape[0])
            loss_sum += float(loss) * size
            correct_sum += float(accuracy) * size
            total += size
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


def run_search(model, inputs, config, model_dir, *, verbose=1, metadata=None):
    """Runs a whole search and writes its artifacts into `model_dir`.

    Writes: ``search_config.json`` (config, model, data sizes, metadata),
    ``metrics.jsonl`` (one line per epoch), ``tensorboard/``,
    ``genotype.json`` (derived with ``config.derivation``) and
    ``genotype_<rule>.json`` for every rule, ``arch_probabilities.json`` and
    ``search_result.json`` (final metrics, skip-connect counts, timings).
    """
    os.makedirs(model_dir, exist_ok=True)
    searcher = Searcher(model, config, inputs.steps_per_epoch)
    write_json_atomic(os.path.join(model_dir, "search_config.json"), {
        "search": dataclasses.asdict(config),
        "model": model.get_config(),
        "data": inputs.sizes(),
        "metadata": metadata or {},
    })
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "tensorboard"))
    metrics_path = os.path.join(model_dir, "metrics.jsonl")
    history = []
    valid_data = inputs.validation()
    started = time.time()
    for epoch in range(config.epochs):
        temperature = temperature_at(config, epoch)
        model.egs.set_temperature(temperature)
        if verbose:
            print(f"Epoch {epoch + 1}/{config.epochs} (temperature {temperature:.3f})", flush=True)
        progbar = keras.utils.Progbar(inputs.steps_per_epoch, verbose=verbose) if verbose else None
        epoch_start = time.time()
        train_metrics = searcher.train_epoch(epoch, inputs, progbar)
        valid = searcher.evaluate(valid_data)
        record = {"epoch": epoch + 1, "temperature": temperature,
                  "learning_rate": float(searcher.weight_optimizer.learning_rate),
                  **{f"train_{k}": v for k, v in train_metrics.items()},
                  "valid_loss": valid["loss"], "valid_accuracy": valid["accuracy"],
                  "arch_entropy": _arch_entropy(model),
                  "epoch_seconds": time.time() - epoch_start}
        history.append(record)
        append_jsonl(metrics_path, record)
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
    child = searcher.evaluate(valid_data, genotype_to_weights(genotype, model.primitives,
                                                              model.num_nodes))
    final = {
        "derivation": config.derivation,
        "supernet_valid_accuracy": history[-1]["valid_accuracy"],
        "child_valid_accuracy_inherited_weights": child["accuracy"],
        "skip_connects": {kind: genotype.num_skip_connects(kind) for kind in ("normal", "reduce")},
        "op_counts": genotype.op_counts(),
        "search_seconds": time.time() - started,
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
