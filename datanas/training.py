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

from datanas.checkpointing import model_variables
from datanas.distribute import is_chief, run_directory
from datanas.export import export_saved_model
from datanas.progress import epoch_progbar
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
    """Optimizer and compiled (distributed) steps for a genotype network.

    Build the model inside ``strategy.scope()``.  Per-replica losses are
    scaled by the global batch; gradients are summed across replicas before
    clipping and weight decay, so a step equals the single-device step.
    """

    def __init__(self, model, config, steps_per_epoch, strategy=None, global_batch_size=None):
        self.model, self.config = model, config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.global_batch_size = global_batch_size
        total = max(1, config.epochs * steps_per_epoch)
        with self.strategy.scope():
            if config.lr_schedule == "cosine":
                schedule = keras.optimizers.schedules.CosineDecay(
                    config.learning_rate, total,
                    alpha=config.learning_rate_min / config.learning_rate)
            else:
                schedule = keras.optimizers.schedules.PolynomialDecay(
                    config.learning_rate, total, end_learning_rate=config.learning_rate_min,
                    power=1.0)
            self.optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum, name="sgd")
            self.optimizer.build(model.trainable_variables)
        self.num_classes = model.num_classes
        self.train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step)

    def _per_example_loss(self, labels, logits):
        one_hot = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)
        return keras.losses.categorical_crossentropy(
            one_hot, logits, from_logits=True, label_smoothing=self.config.label_smoothing)

    def _replica_train(self, images, labels):
        variables = self.model.trainable_variables
        replicas = self.strategy.num_replicas_in_sync
        global_batch = self.global_batch_size or tf.shape(labels)[0] * replicas
        with tf.GradientTape() as tape:
            logits, auxiliary = self.model.logits_and_auxiliary(images, training=True)
            per_example = self._per_example_loss(labels, logits)
            if auxiliary is not None and self.config.auxiliary_weight > 0:
                per_example_total = per_example + self.config.auxiliary_weight * \
                    self._per_example_loss(labels, auxiliary)
            else:
                per_example_total = per_example
            total = tf.nn.compute_average_loss(per_example_total, global_batch_size=global_batch)
        grads = [tf.zeros_like(v) if g is None else g
                 for g, v in zip(tape.gradient(total, variables), variables)]
        context = tf.distribute.get_replica_context()
        if replicas > 1 and context is not None:
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if self.config.grad_clip > 0:
            grads, _ = tf.clip_by_global_norm(grads, self.config.grad_clip)
        grads = [g + self.config.weight_decay * v for g, v in zip(grads, variables)]
        if replicas > 1:
            grads = [g / replicas for g in grads]   # Keras sums across replicas again
        self.optimizer.apply_gradients(zip(grads, variables))
        correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(labels, tf.int32))
        return (tf.reduce_sum(per_example), tf.reduce_sum(tf.cast(correct, tf.float32)),
                tf.shape(labels)[0])

    def _train_step(self, images, labels):
        loss, correct, count = (self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                                for v in self.strategy.run(self._replica_train, (images, labels)))
        count = tf.cast(count, tf.float32)
        return {"loss": loss / count, "accuracy": correct / count}

    def _replica_eval(self, images, labels):
        labels = tf.cast(labels, tf.int32)

        def sums():
            logits = self.model(images, training=False)
            loss = tf.reduce_sum(self._per_example_loss(labels, logits))
            top1 = tf.reduce_sum(tf.cast(
                tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
            k = min(5, self.num_classes)
            top5 = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32))
            return loss, top1, top5

        # The last evaluation batch can leave some replicas with 0 examples.
        loss, top1, top5 = tf.cond(tf.shape(labels)[0] > 0, sums, lambda: (0.0, 0.0, 0.0))
        return loss, top1, top5, tf.shape(labels)[0]

    def _eval_step(self, images, labels):
        return tuple(self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                     for v in self.strategy.run(self._replica_eval, (images, labels)))

    def distribute(self, dataset_fn):
        """Distributes a pipeline built by `dataset_fn(input_context)`."""
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def evaluate(self, dataset):
        loss = top1 = top5 = 0.0
        count = 0
        for images, labels in dataset:
            l, a, b, n = self.eval_step(images, labels)
            loss, top1, top5 = loss + float(l), top1 + float(a), top5 + float(b)
            count += int(n)
        count = max(count, 1)
        return {"loss": loss / count, "accuracy": top1 / count, "top5": top5 / count,
                "error": 1.0 - top1 / count}


def run_training(model, train_data, eval_sets, config, model_dir, *, steps_per_epoch,
                 image_shape, select_on=None, export_dir=None, verbose=1, metadata=None,
                 strategy=None, global_batch_size=None):
    """Trains `model` and writes everything into `model_dir`.

    Resumes from the last end-of-epoch checkpoint in `model_dir`.

    Args:
      train_data: callable (epoch, input_context) -> tf.data.Dataset of
        (images, labels) batches of the per-replica size; input_context may
        be None (single pipeline).
      eval_sets: {name: callable input_context -> dataset} evaluated after
        every epoch (e.g. {"valid": ..., "test": ...}).
      select_on: name in eval_sets whose accuracy picks the best checkpoint;
        None keeps only the last (no selection on the test split by default).
      export_dir: if set, the final model is exported there as a SavedModel.
    """
    strategy = strategy or tf.distribute.get_strategy()
    model_dir = run_directory(strategy, model_dir)
    trainer = GenotypeTrainer(model, config, steps_per_epoch, strategy=strategy,
                              global_batch_size=global_batch_size)
    with trainer.strategy.scope():
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        best_var = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_accuracy")
    eval_sets = {name: trainer.distribute(fn) for name, fn in eval_sets.items()}
    checkpoint = tf.train.Checkpoint(model=model, model_variables=model_variables(model),
                                     optimizer=trainer.optimizer, epoch=epoch_var,
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
        progbar = epoch_progbar(steps_per_epoch, verbose)
        totals, count, start = {"loss": 0.0, "accuracy": 0.0}, 0, time.time()
        train = trainer.distribute(lambda context, epoch=epoch: train_data(epoch, context))
        for images, labels in train:
            values = {k: float(v) for k, v in trainer.train_step(images, labels).items()}
            for key in totals:
                totals[key] += values[key]
            count += 1
            if progbar is not None:
                progbar.update(count, values=[(k, v / count) for k, v in totals.items()])
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
    if export_dir and is_chief(trainer.strategy):
        export_saved_model(model, export_dir, image_shape)
        results["export_dir"] = export_dir
    model.save(os.path.join(model_dir, "model.keras"))
    write_json_atomic(os.path.join(model_dir, "results.json"), results)
    return results
