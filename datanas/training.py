"""Training a genotype network from scratch (paper Section 4.1 recipes).

CIFAR recipe (defaults): SGD momentum 0.9, cosine learning rate from 0.025,
L2 weight decay 3e-4 added to the gradient, gradient clipping 5, auxiliary
loss weight 0.4, drop-path probability ramped linearly to 0.2.  The ImageNet
recipe uses ``lr_schedule="linear"``, label smoothing 0.1 and weight decay
3e-5 (see trainers/train_imagenet.py).

``run_training`` keeps the last checkpoint (and resumes from it when the same
``model_dir`` is used again) and the best one, writes per-epoch metrics,
TensorBoard summaries and results, and can export a SavedModel.
"""

import dataclasses
import math
import os
import time

import keras
import tensorflow as tf

from datanas.export import export_saved_model
from datanas.run_files import append_jsonl, write_json_atomic

__all__ = ["TrainConfig", "GenotypeTrainer", "run_training", "LR_SCHEDULES"]

LR_SCHEDULES = ("cosine", "linear")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 600
    learning_rate: float = 0.025
    learning_rate_min: float = 0.0
    lr_schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2
    label_smoothing: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; "
                             f"got {self.lr_schedule!r}.")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        if not 0 <= self.learning_rate_min <= self.learning_rate:
            raise ValueError(f"learning_rate_min must be in [0, learning_rate], got "
                             f"{self.learning_rate_min!r}.")
        for name, low, high in (("drop_path_prob", 0.0, 1.0), ("label_smoothing", 0.0, 1.0),
                                ("momentum", 0.0, 1.0)):
            value = getattr(self, name)
            if not low <= value < high:
                raise ValueError(f"{name} must be in [{low}, {high}), got {value!r}.")
        for name in ("weight_decay", "grad_clip", "auxiliary_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}.")


class GenotypeTrainer:
    """Optimizer and compiled steps for a NetworkCIFAR / NetworkImageNet."""

    def __init__(self, model, config, steps_per_epoch):
        self.model, self.config = model, config
        total = max(1, config.epochs * steps_per_epoch)
        if config.lr_schedule == "cosine":
            schedule = keras.optimizers.schedules.CosineDecay(
                config.learning_rate, total, alpha=config.learning_rate_min / config.learning_rate)
        else:
            schedule = keras.optimizers.schedules.PolynomialDecay(
                config.learning_rate, total, end_learning_rate=config.learning_rate_min, power=1.0)
        self.optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum, name="sgd")
        self.optimizer.build(model.trainable_variables)
        self.num_classes = model.num_classes
        self.train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step)

    def _loss(self, labels, logits):
        one_hot = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)
        return tf.reduce_mean(keras.losses.categorical_crossentropy(
            one_hot, logits, from_logits=True, label_smoothing=self.config.label_smoothing))

    def _train_step(self, images, labels):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits, auxiliary = self.model.logits_and_auxiliary(images, training=True)
            loss = self._loss(labels, logits)
            total = loss
            if auxiliary is not None and self.config.auxiliary_weight > 0:
                total = loss + self.config.auxiliary_weight * self._loss(labels, auxiliary)
        grads = tape.gradient(total, variables)
        if self.config.grad_clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.config.grad_clip)
        grads = [g + self.config.weight_decay * v for g, v in zip(grads, variables)]
        self.optimizer.apply_gradients(zip(grads, variables))
        correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(labels, tf.int32))
        return {"loss": loss, "accuracy": tf.reduce_mean(tf.cast(correct, tf.float32))}

    def _eval_step(self, images, labels):
        labels = tf.cast(labels, tf.int32)
        logits = self.model(images, training=False)
        loss = self._loss(labels, logits) * tf.cast(tf.shape(labels)[0], tf.float32)
        top1 = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels),
                                     tf.float32))
        k = min(5, self.num_classes)
        top5 = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32))
        return loss, top1, top5

    def evaluate(self, dataset):
        loss = top1 = top5 = 0.0
        count = 0
        for images, labels in dataset:
            l, a, b = self.eval_step(images, labels)
            loss, top1, top5 = loss + float(l), top1 + float(a), top5 + float(b)
            count += int(labels.shape[0])
        count = max(count, 1)
        return {"loss": loss / count, "accuracy": top1 / count, "top5": top5 / count,
                "error": 1.0 - top1 / count}


def run_training(model, train_data, eval_sets, config, model_dir, *, steps_per_epoch,
                 image_shape, select_on=None, export_dir=None, verbose=1, metadata=None):
    """Trains `model` and writes everything into `model_dir`.

    Args:
      train_data: callable epoch -> tf.data.Dataset of (images, labels).
      eval_sets: {name: dataset} evaluated after every epoch (e.g.
        {"valid": ..., "test": ...}).
      select_on: name in eval_sets whose accuracy picks the best checkpoint;
        None keeps only the last (no selection on the test split by default).
      export_dir: if set, the final model is exported there as a SavedModel.
    """
    os.makedirs(model_dir, exist_ok=True)
    trainer = GenotypeTrainer(model, config, steps_per_epoch)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    best_var = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_accuracy")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=trainer.optimizer, epoch=epoch_var,
                                     best_accuracy=best_var)
    last = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, "checkpoints"),
                                      max_to_keep=1, checkpoint_name="last")
    best = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, "best"),
                                      max_to_keep=1, checkpoint_name="best")
    if last.latest_checkpoint:
        checkpoint.restore(last.latest_checkpoint).assert_existing_objects_matched()
        if verbose:
            print(f"Resumed from {last.latest_checkpoint} (epoch {int(epoch_var.numpy())}).",
                  flush=True)
    write_json_atomic(os.path.join(model_dir, "train_config.json"), {
        "train": dataclasses.asdict(config), "model": model.get_config(),
        "metadata": metadata or {}})
    writer = tf.summary.create_file_writer(os.path.join(model_dir, "tensorboard"))
    metrics_path = os.path.join(model_dir, "metrics.jsonl")
    record = {}
    for epoch in range(int(epoch_var.numpy()), config.epochs):
        model.drop_path_rate.assign(config.drop_path_prob * epoch / config.epochs)
        if verbose:
            print(f"Epoch {epoch + 1}/{config.epochs}", flush=True)
        progbar = keras.utils.Progbar(steps_per_epoch, verbose=verbose) if verbose else None
        totals, count, start = {"loss": 0.0, "accuracy": 0.0}, 0, time.time()
        for images, labels in train_data(epoch):
            values = {k: float(v) for k, v in trainer.train_step(images, labels).items()}
            for key in totals:
                totals[key] += values[key]
            count += 1
            if progbar is not None:
                progbar.update(count, values=list(values.items()))
        record = {"epoch": epoch + 1, "drop_path_rate": float(model.drop_path_rate.numpy()),
                  "learning_rate": float(trainer.optimizer.learning_rate),
                  "train_loss": totals["loss"] / max(count, 1),
                  "train_accuracy": totals["accuracy"] / max(count, 1),
                  "epoch_seconds": time.time() - start}
        for name, dataset in eval_sets.items():
            for key, value in trainer.evaluate(dataset).items():
                record[f"{name}_{key}"] = value
        epoch_var.assign(epoch + 1)
        if select_on and record[f"{select_on}_accuracy"] > best_var.numpy():
            best_var.assign(record[f"{select_on}_accuracy"])
            best.save(checkpoint_number=epoch + 1)
        last.save(checkpoint_number=epoch + 1)
        append_jsonl(metrics_path, record)
        with writer.as_default(step=epoch + 1):
            for key, value in record.items():
                if key != "epoch":
                    tf.summary.scalar(key, value)
        if verbose:
            print("  " + " ".join(f"{k}={v:.4f}" for k, v in record.items()
                                  if k.split("_", 1)[0] in eval_sets), flush=True)
    writer.flush()
    results = {"final": record, "best_selected_on": select_on,
               "best_accuracy": float(best_var.numpy()) if select_on else None,
               "epochs": config.epochs}
    if export_dir:
        export_saved_model(model, export_dir, image_shape)
        results["export_dir"] = export_dir
    model.save(os.path.join(model_dir, "model.keras"))
    write_json_atomic(os.path.join(model_dir, "results.json"), results)
    return results
