"""Training a recurrent genotype as a language model (DARTS/AWD-LSTM recipe).

Recipe (DARTS rnn/train.py, which the DATA paper follows; defaults here):
plain SGD at learning rate 20, the gradient clipped to global norm 0.25, L2
weight decay 8e-7 (5e-7 on WT2), temporal activation regularisation 1e-3,
variable-length BPTT windows around 35 tokens with the learning rate scaled
by ``length / bptt`` for each window, and non-monotonically triggered
averaged SGD (NT-ASGD): once the validation loss of an epoch is worse than
the best of all epochs but the last ``nonmono`` (5), the optimiser keeps
stepping as SGD but evaluation and the final model use the running average
of the weights from that point on (ASGD with t0 = 0, lambda = 0).

``run_lm_training`` drives ``LanguageModelTrainer`` with the engine's run
loop (exact mid-epoch resume: the weights, their average, the switch and
the validation history are all checkpointed), reports validation
perplexity every epoch, keeps the checkpoint of the best VALIDATION
perplexity, and reads the test split ONCE, at the end, from that
checkpoint (DARTS rnn/train.py: ``save_checkpoint`` when the validation
loss improves, then "Load the best saved model" and ``evaluate(test_data,
test_batch_size)`` after the last epoch).  At DARTS' test batch of 1 a test
pass costs more than a training epoch, so it is not run per epoch.
"""

import dataclasses
import math
import os

import keras
import tensorflow as tf

from datanas.engine.loop import Program, RunState, run_loop
from datanas.engine.run_files import write_json_atomic
from datanas.engine.steps import apply_update, reduce_sums, scaled_loss
from datanas.engine.strategy import (distributed_epoch, is_chief, num_input_pipelines,
                                     run_directory)
from datanas.tasks import LanguageModelingTask
from datanas.training.cell_summaries import write_cell_summaries
from datanas.training.export import write_final_files

__all__ = ["LMTrainConfig", "LanguageModelTrainer", "run_lm_training"]


@dataclasses.dataclass(frozen=True)
class LMTrainConfig:
    """Hyper-parameters (defaults: DARTS' PTB evaluation)."""
    epochs: int = 8000
    learning_rate: float = 20.0
    grad_clip: float = 0.25
    weight_decay: float = 8e-7
    temporal_weight: float = 1e-3
    activation_weight: float = 0.0
    bptt: int = 35
    nonmono: int = 5
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "bptt", "nonmono"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("learning_rate", "grad_clip"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        for name in ("weight_decay", "temporal_weight", "activation_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")


class _Averager(tf.Module):
    """Running average of the weights since the NT-ASGD switch, the switch
    itself and the per-epoch validation losses it is decided on."""

    def __init__(self, variables, epochs):
        super().__init__(name="asgd")
        self.active = tf.Variable(False, trainable=False, name="active")
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="count")
        self.averages = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"average_{i}")
                         for i, v in enumerate(variables)]
        self.valid_losses = tf.Variable(tf.zeros([epochs], tf.float64), trainable=False,
                                        name="valid_losses")

    def update(self, variables):
        count = self.count.assign_add(1)
        rate = 1.0 / tf.cast(count, tf.float32)
        for average, value in zip(self.averages, variables):
            average.assign_add(rate * (tf.cast(value, average.dtype) - average))


class LanguageModelTrainer:
    """Optimizer and compiled (distributed) steps of a language model."""

    def __init__(self, model, config, steps_per_epoch, strategy=None, global_batch_size=None):
        self.model, self.config = model, config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.global_batch_size = global_batch_size
        self.task = LanguageModelingTask(config.temporal_weight, config.activation_weight)
        variables = model.trainable_variables
        with self.strategy.scope():
            self.optimizer = keras.optimizers.SGD(config.learning_rate, name="sgd")
            self.optimizer.build(variables)
            self.averager = _Averager(variables, config.epochs)
            self.state = RunState(self.task.train_metrics)
        self.steps_per_epoch = steps_per_epoch
        self.train_step = tf.function(self._train_step, reduce_retracing=True)
        self.eval_step = tf.function(self._eval_step, reduce_retracing=True)
        self.average_step = tf.function(lambda: self.averager.update(model.trainable_variables))

    def _replica_train(self, batch):
        inputs, targets = self.task.unpack(batch)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model.forward(inputs, training=True)
            per_row = self.task.per_example_loss(targets, outputs)
            loss = scaled_loss(per_row, self.global_batch_size)
        length = tf.cast(tf.shape(targets)[1], tf.float32)
        apply_update(self.optimizer, tape.gradient(loss, variables), variables,
                     clip_norm=self.config.grad_clip, weight_decay=self.config.weight_decay,
                     step_scale=length / self.config.bptt)
        return self.task.train_sums(targets, outputs, per_row), self.task.count(targets)

    def _train_step(self, batch):
        sums, count = self.strategy.run(self._replica_train, (batch,))
        reduced = reduce_sums(self.strategy, [sums["loss"], count])
        self.state.step.assign_add(1)
        return {"loss": reduced[0] / tf.cast(reduced[1], tf.float32)}

    def _replica_eval(self, batch):
        inputs, targets = self.task.unpack(batch)
        count = self.task.count(targets)
        # Rows split evenly over replicas: no empty batch, no cond (the
        # carried state's all-gather must not sit inside one).
        return (self.task.eval_sums(targets, self.model.forward(inputs, training=False))[
            "loss"],), count

    def _eval_step(self, batch):
        values, count = self.strategy.run(self._replica_eval, (batch,))
        return reduce_sums(self.strategy, list(values) + [count])

    def use_batch_signature(self, spec):
        """Compiles the training step for batches of `spec` (the distributed
        dataset's element_spec, with a variable window length) rather than
        for the first batch's shape: a run resumed mid-epoch then runs the
        same graph as an uninterrupted one (see Searcher.use_batch_signature)."""
        self.train_step = tf.function(self._train_step, input_signature=[spec])

    def train(self, batch):
        metrics = self.train_step(batch)
        if bool(self.averager.active.numpy()):
            self.average_step()
        return metrics

    def distribute(self, dataset_fn):
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def swap_in_average(self):
        for variable, average in zip(self.model.trainable_variables, self.averager.averages):
            current = tf.identity(variable)
            variable.assign(average)
            average.assign(current)

    def evaluate(self, dataset):
        """Loss and perplexity of a split (with the averaged weights once ASGD is on)."""
        averaged = bool(self.averager.active.numpy())
        if averaged:
            self.swap_in_average()
        try:
            total, count = 0.0, 0
            for batch in dataset:
                loss, batch_count = self.eval_step(batch)
                total += float(loss)
                count += int(batch_count)
        finally:
            if averaged:
                self.swap_in_average()
        return self.task.split_metrics({"loss": total}, count)

    def maybe_switch_to_asgd(self, epoch, valid_loss):
        """NT-ASGD trigger (DARTS/AWD-LSTM): switch once the epoch's validation
        loss is worse than the best of all epochs before the last `nonmono`."""
        history = self.averager.valid_losses.numpy()[:epoch]
        self.averager.valid_losses[epoch].assign(valid_loss)
        nonmono = self.config.nonmono
        if bool(self.averager.active.numpy()):
            return False
        if len(history) > nonmono and valid_loss > float(history[:-nonmono].min()):
            self.averager.active.assign(True)
            self.averager.count.assign(0)
            for average, variable in zip(self.averager.averages, self.model.trainable_variables):
                average.assign(variable)
            return True
        return False


class LanguageModelProgram(Program):
    """Training epochs for the run loop: steps, validation perplexity, NT-ASGD
    (the test split is read once after the loop, ``run_lm_training``)."""

    def __init__(self, trainer, inputs):
        self.trainer, self.inputs = trainer, inputs
        self.valid = trainer.distribute(inputs.validation)
        self.state = trainer.state
        self.epochs = trainer.config.epochs
        self.steps_per_epoch = trainer.steps_per_epoch
        self._signed = False

    def checkpoint_objects(self):
        return {"model": self.trainer.model, "optimizer": self.trainer.optimizer,
                "asgd": self.trainer.averager}

    def batches(self, epoch, skip):
        data = distributed_epoch(self.trainer.strategy, self.inputs.train, epoch, skip,
                                 self.steps_per_epoch)
        if not self._signed:   # one graph for every window length, in every process
            self.trainer.use_batch_signature(data.element_spec)
            self._signed = True
        return data

    def train_step(self, batch):
        return self.trainer.train(batch)

    def end_epoch(self, epoch):
        valid = self.trainer.evaluate(self.valid)
        averaged = bool(self.trainer.averager.active.numpy())
        switched = self.trainer.maybe_switch_to_asgd(epoch, valid["loss"])
        return {"valid_loss": valid["loss"], "valid_perplexity": valid["perplexity"],
                "averaged_weights": averaged, "switched_to_asgd": switched}

    def summaries(self, epoch):
        write_cell_summaries(self.trainer.model, epoch)


def run_lm_training(model, inputs, config, model_dir, *, strategy=None, export_dir=None,
                    verbose=1, metadata=None, checkpoint_every_steps=0):
    """Trains a language model and writes everything into `model_dir`.

    Rerunning with the same `model_dir` resumes exactly (mid-epoch included
    with `checkpoint_every_steps` > 0).  `inputs` provides ``train(epoch,
    input_context)``, ``validation(input_context)``, ``test(input_context)``,
    ``batch_size`` and ``distributed_steps_per_epoch(pipelines, replicas)``
    (``data_tf.lm_inputs``).

    Writes ``train_config.json``, ``metrics.jsonl`` (validation perplexity
    per epoch), TensorBoard scalars, ``checkpoints/``, ``best/`` (lowest
    validation perplexity), ``model.keras`` (that checkpoint's weights,
    averaged if NT-ASGD was on) and ``results.json`` with the epoch chosen
    on validation and its test perplexity, the only reading of the test
    split; optionally a SavedModel in `export_dir`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    model_dir = run_directory(strategy, model_dir)
    steps = inputs.distributed_steps_per_epoch(num_input_pipelines(strategy),
                                               strategy.num_replicas_in_sync)
    if steps < 1:
        raise ValueError(f"the training stream gives no full window of {inputs.batch_size} "
                         "rows per step; use more training text or a smaller --batch_size.")
    trainer = LanguageModelTrainer(model, config, steps, strategy=strategy,
                                   global_batch_size=inputs.batch_size)
    write_json_atomic(os.path.join(model_dir, "train_config.json"), {
        "train": dataclasses.asdict(config), "model": model.get_config(),
        "data": inputs.sizes(), "metadata": metadata or {}})
    program = LanguageModelProgram(trainer, inputs)
    loop = run_loop(program, model_dir, verbose=verbose,
                    checkpoint_every_steps=checkpoint_every_steps,
                    select_on="valid_perplexity", select_max=False,
                    log_keys=["valid_perplexity", "averaged_weights"])
    # The test split is read once, for the checkpoint selected on validation
    # (saved as best-<epoch>); the saved model is that checkpoint (averaged
    # weights if NT-ASGD was on there).
    best_path = tf.train.latest_checkpoint(os.path.join(model_dir, "best"))
    selected_epoch = int(best_path.rsplit("-", 1)[1])
    tf.train.Checkpoint(**program.checkpoint_objects()).restore(best_path).expect_partial()
    best_valid = trainer.evaluate(program.valid)
    best_test = trainer.evaluate(trainer.distribute(inputs.test))
    if bool(trainer.averager.active.numpy()):
        trainer.swap_in_average()
    results = {"final": loop.last_record, "epochs": config.epochs,
               "selected_on": "valid_perplexity", "selected_epoch": selected_epoch,
               "best_valid_perplexity": best_valid["perplexity"],
               "test_perplexity_at_best_valid": best_test["perplexity"],
               "test_loss_at_best_valid": best_test["loss"],
               "parameters": int(model.count_params())}
    # model.keras, the export, then results.json, which marks the run finished:
    # a write that fails (a full disk) is one line and the rerun resumes.
    export = ((export_dir, {"input_shape": (None,), "dtype": tf.int32, "input_name": "tokens"})
              if export_dir and is_chief(trainer.strategy) else None)
    write_final_files(model, model_dir, results, export=export)
    if verbose:
        print(f"best validation perplexity {results['best_valid_perplexity']:.2f} (epoch "
              f"{selected_epoch}); test perplexity at that checkpoint "
              f"{results['test_perplexity_at_best_valid']:.2f} "
              f"(results in {os.path.join(model_dir, 'results.json')})", flush=True)
    return results
