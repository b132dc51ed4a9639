"""Training a genotype network from scratch (paper Section 4.1 recipes).

CIFAR recipe (defaults): SGD momentum 0.9, cosine learning rate from 0.025,
L2 weight decay 3e-4 added to the gradient, gradient clipping 5, auxiliary
loss weight 0.4, drop-path probability ramped linearly to 0.2.  The ImageNet
recipe uses ``lr_schedule="linear"``, label smoothing 0.1 and weight decay
3e-5 (see trainers/train_imagenet.py).  Segmentation (trainers/train_voc.py)
uses DeepLab's ``lr_schedule="poly"`` (power 0.9) and a ``SegmentationTask``:
what is selected on, logged and reported follows the task's headline metric.

``run_training`` drives ``GenotypeTrainer`` with the engine's run loop: step
checkpoints with exact (mid-epoch) resume, the best checkpoint by validation
accuracy, per-epoch metrics, TensorBoard summaries, results, and an optional
SavedModel export.
"""

import dataclasses
import math
import os

import keras
import numpy as np
import tensorflow as tf

from datanas.engine.loop import Program, run_loop
from datanas.engine.run_files import write_json_atomic
from datanas.engine.steps import (apply_update, batch_norm_statistics, guarded_sums, reduce_sums,
                                  scaled_loss, sync_replica_statistics)
from datanas.engine.strategy import distributed_epoch, is_chief, run_directory
from datanas.engine.loop import RunState
from datanas.tasks import default_task
from datanas.training.cell_summaries import write_cell_summaries
from datanas.training.export import write_final_files
from datanas.training.final_network import FinalNetwork

__all__ = ["TrainConfig", "GenotypeTrainer", "TrainingProgram", "run_training", "LR_SCHEDULES"]

LR_SCHEDULES = ("cosine", "linear", "poly")
#: Power of the "poly" schedule: lr = base * (1 - step / total) ** 0.9 (DeepLab).
POLY_POWER = 0.9


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

    Build the model inside ``strategy.scope()``.  Steps follow the engine's
    recipe (``datanas.engine.steps``): per-replica losses scaled by the
    global batch, gradients summed across replicas before clipping and
    weight decay, so a step equals the single-device step.
    """

    def __init__(self, model, config, steps_per_epoch, strategy=None, global_batch_size=None,
                 task=None):
        if not isinstance(model, FinalNetwork):
            missing = [name for name in ("logits_and_auxiliary", "drop_path_rate")
                       if not hasattr(model, name)]
            raise TypeError(f"{type(model).__name__} cannot be trained as a final network: it "
                            f"has no {' or '.join(missing)} (datanas.training.final_network).")
        self.model, self.config = model, config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.global_batch_size = global_batch_size
        self.task = task if task is not None else default_task(
            model, label_smoothing=config.label_smoothing)
        total = max(1, config.epochs * steps_per_epoch)
        with self.strategy.scope():
            if config.lr_schedule == "cosine":
                schedule = keras.optimizers.schedules.CosineDecay(
                    config.learning_rate, total,
                    alpha=config.learning_rate_min / config.learning_rate)
            else:
                schedule = keras.optimizers.schedules.PolynomialDecay(
                    config.learning_rate, total, end_learning_rate=config.learning_rate_min,
                    power=POLY_POWER if config.lr_schedule == "poly" else 1.0)
            self.optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum, name="sgd")
            self.optimizer.build(model.trainable_variables)
            self.state = RunState(self.task.train_metrics)
        self.train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step)
        self._eval_steps = {}

    def _replica_train(self, batch):
        inputs, targets = self.task.unpack(batch)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs, auxiliary = self.model.logits_and_auxiliary(inputs, training=True)
            per_example = self.task.per_example_loss(targets, outputs)
            total = per_example
            if auxiliary is not None and self.config.auxiliary_weight > 0:
                total = per_example + self.config.auxiliary_weight * \
                    self.task.per_example_loss(targets, auxiliary)
            loss = scaled_loss(total, self.global_batch_size)
        apply_update(self.optimizer, tape.gradient(loss, variables), variables,
                     clip_norm=self.config.grad_clip, weight_decay=self.config.weight_decay)
        sync_replica_statistics(batch_norm_statistics(self.model))
        return self.task.train_sums(targets, outputs, per_example), self.task.count(targets)

    def _train_step(self, batch):
        sums, count = self.strategy.run(self._replica_train, (batch,))
        names = sorted(sums)
        reduced = reduce_sums(self.strategy, [sums[n] for n in names] + [count])
        count = tf.cast(reduced[-1], tf.float32)
        self.state.step.assign_add(1)
        return {n: value / count for n, value in zip(names, reduced[:-1])}

    def _replica_eval(self, batch):
        inputs, targets = self.task.unpack(batch)
        keys = self.task.eval_names

        def sums():
            result = self.task.eval_sums(targets, self.model(inputs, training=False))
            return tuple(result[k] for k in keys)

        count = self.task.count(targets)
        shapes = self.task.eval_shapes
        return guarded_sums(count, sums, tuple(tf.zeros(shapes[k]) for k in keys)), count

    def _eval_step(self, batch):
        values, count = self.strategy.run(self._replica_eval, (batch,))
        return reduce_sums(self.strategy, list(values) + [count])

    def distribute(self, dataset_fn):
        """Distributes a pipeline built by `dataset_fn(input_context)`."""
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def _eval_step_for(self, dataset):
        """The evaluation step compiled for `dataset`'s element_spec: one graph
        for a last, shorter batch and for images of any size (a segmentation
        split evaluated on full images), not one trace per shape."""
        spec = getattr(dataset, "element_spec", None)
        if spec is None:
            return self.eval_step
        key = repr(spec)
        if key not in self._eval_steps:
            self._eval_steps[key] = tf.function(self._eval_step, input_signature=[spec])
        return self._eval_steps[key]

    def evaluate(self, dataset):
        keys, shapes = self.task.eval_names, self.task.eval_shapes
        # Scalars add up as Python floats, other sums (a confusion matrix) in float64.
        totals = {k: np.zeros(shapes[k]) if shapes[k] else 0.0 for k in keys}
        count, eval_step = 0, self._eval_step_for(dataset)
        for batch in dataset:
            *values, batch_count = eval_step(batch)
            for key, value in zip(keys, values):
                totals[key] += (value.numpy().astype(np.float64) if shapes[key]
                                else float(value))
            count += int(batch_count)
        return self.task.split_metrics(totals, count)


class TrainingProgram(Program):
    """Training epochs for the run loop: drop-path ramp, steps, evaluation."""

    def __init__(self, trainer, train_data, eval_sets, steps_per_epoch, final_eval_sets=None):
        self.trainer, self.train_data = trainer, train_data
        self.eval_sets = {name: trainer.distribute(fn) for name, fn in eval_sets.items()}
        self.final_eval_sets = {name: trainer.distribute(fn)
                                for name, fn in (final_eval_sets or {}).items()}
        self.state = trainer.state
        self.epochs = trainer.config.epochs
        self.steps_per_epoch = steps_per_epoch

    def checkpoint_objects(self):
        return {"model": self.trainer.model, "optimizer": self.trainer.optimizer}

    def begin_epoch(self, epoch):
        rate = self.trainer.config.drop_path_prob * epoch / self.epochs
        self.trainer.model.drop_path_rate.assign(rate)
        return {"drop_path_rate": float(self.trainer.model.drop_path_rate.numpy())}

    def batches(self, epoch, skip):
        return distributed_epoch(self.trainer.strategy, self.train_data, epoch, skip,
                                 self.steps_per_epoch)

    def train_step(self, batch):
        return self.trainer.train_step(batch)

    def end_epoch(self, epoch):
        record = {"learning_rate": float(self.trainer.optimizer.learning_rate)}
        sets = dict(self.eval_sets)
        if epoch == self.epochs - 1:
            sets.update(self.final_eval_sets)
        for name, dataset in sets.items():
            for key, value in self.trainer.evaluate(dataset).items():
                record[f"{name}_{key}"] = value
        return record

    def summaries(self, epoch):
        write_cell_summaries(self.trainer.model, epoch)


def run_training(model, train_data, eval_sets, config, model_dir, *, steps_per_epoch,
                 image_shape, select_on=None, export_dir=None, verbose=1, metadata=None,
                 strategy=None, global_batch_size=None, checkpoint_every_steps=0, task=None,
                 final_eval_sets=None, callbacks=None):
    """Trains `model` and writes everything into `model_dir`.

    Rerunning with the same `model_dir` resumes from the last checkpoint
    (mid-epoch included when `checkpoint_every_steps` > 0).

    Args:
      train_data: callable (epoch, input_context) -> tf.data.Dataset of
        (images, labels) batches of the per-replica size; input_context may
        be None (single pipeline).
      eval_sets: {name: callable input_context -> dataset} evaluated after
        every epoch (e.g. {"valid": ..., "test": ...}).
      final_eval_sets: like eval_sets, evaluated after the last epoch only
        (a test split reported once, never looked at during training).
      select_on: name in eval_sets whose headline metric (the task's: accuracy,
        mIoU) picks the best checkpoint; None keeps only the last (no
        selection on the test split by default).
      export_dir: if set, the final model is exported there as a SavedModel.
      callbacks: Keras callbacks told each epoch's record (``on_epoch_end``).
    """
    strategy = strategy or tf.distribute.get_strategy()
    model_dir = run_directory(strategy, model_dir)
    trainer = GenotypeTrainer(model, config, steps_per_epoch, strategy=strategy,
                              global_batch_size=global_batch_size, task=task)
    task = trainer.task
    write_json_atomic(os.path.join(model_dir, "train_config.json"), {
        "train": dataclasses.asdict(config), "model": model.get_config(),
        "metadata": metadata or {}})
    if select_on is not None and select_on not in eval_sets:
        raise ValueError(f"select_on={select_on!r} is not one of the sets evaluated every "
                         f"epoch: {sorted(eval_sets)}.")
    program = TrainingProgram(trainer, train_data, eval_sets, steps_per_epoch,
                              final_eval_sets=final_eval_sets)
    loop = run_loop(program, model_dir,
                    verbose=verbose,
                    checkpoint_every_steps=checkpoint_every_steps,
                    select_on=f"{select_on}_{task.headline}" if select_on else None,
                    select_max=task.headline_higher_is_better,
                    log_keys=[f"{name}_{key}" for name in [*eval_sets, *(final_eval_sets or {})]
                              for key in task.log_metrics],
                    callbacks=callbacks)
    results = {"final": loop.last_record, "best_selected_on": select_on,
               f"best_{task.headline}": loop.best_value if select_on else None,
               "epochs": config.epochs}
    # model.keras, the export, then results.json, which marks the run finished:
    # a write that fails (a full disk) is one line and the rerun resumes.
    export = ((export_dir, {"input_shape": image_shape})
              if export_dir and is_chief(trainer.strategy) else None)
    return write_final_files(model, model_dir, results, export=export)
