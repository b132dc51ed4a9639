"""A whole search run: the searcher driven by the engine's run loop, then
derivation and the run's artifacts.

Written against a SearchSpace (``datanas.spaces``) and a Task
(``datanas.tasks``); nothing here knows cells or images.
"""

import dataclasses
import os
import time

import tensorflow as tf

from datanas.engine.loop import Program, run_loop
from datanas.engine.run_files import RunFileDamaged, read_json, write_json_atomic
from datanas.engine.run_identity import identity_differences
from datanas.engine.strategy import distributed_epoch, num_input_pipelines, run_directory
from datanas.searching.config import arch_learning_rate_at, temperature_at
from datanas.searching.epoch_pictures import EpochPictures
from datanas.searching.searcher import Searcher
from datanas.spaces import get_space, result_genotype_files

__all__ = ["SearchResult", "SearchProgram", "make_searcher", "write_search_config",
           "check_same_search", "run_search", "write_genotype", "SEARCH_RESULT_FILE",
           "search_result_files"]

#: The file whose presence marks a search run as finished.
SEARCH_RESULT_FILE = "search_result.json"


def search_result_files(spaces=None):
    """Every result file run_search writes at the end of a search of these
    spaces (all registered spaces when None): what an extended run
    (``--extend_run``) keeps under attempt names before it writes new ones."""
    return (SEARCH_RESULT_FILE, "genotype.json", *result_genotype_files(spaces),
            "arch_probabilities.json")


@dataclasses.dataclass
class SearchResult:
    genotype: object
    genotypes: dict
    history: list
    final: dict


def write_genotype(genotype, path):
    """A genotype's JSON form, written atomically."""
    write_json_atomic(path, genotype.to_dict())


class SearchProgram(Program):
    """Search epochs for the run loop: EGS temperature, search steps, validation."""

    def __init__(self, searcher, space, inputs, valid_data, pictures=None):
        self.searcher, self.space, self.inputs = searcher, space, inputs
        self.valid_data = valid_data
        self.pictures = pictures   # an EpochPictures, or None
        self.state = searcher.state
        self.epochs = searcher.config.epochs
        self.steps_per_epoch = searcher.steps_per_epoch
        self._signed = False

    def checkpoint_objects(self):
        return {"model": self.searcher.model,
                "weight_optimizer": self.searcher.weight_optimizer,
                "arch_optimizer": self.searcher.arch_optimizer}

    def begin_epoch(self, epoch):
        config = self.searcher.config
        settings = {}
        if config.arch_warmup_epochs:
            # A rate of 0 keeps the logits still in the same compiled step.
            settings["arch_learning_rate"] = arch_learning_rate_at(config, epoch)
            self.searcher.arch_optimizer.learning_rate = settings["arch_learning_rate"]
        estimator = self.searcher.model.estimator
        if estimator.uses_temperature:
            settings["temperature"] = temperature_at(config, epoch)
            estimator.set_temperature(settings["temperature"])
        return settings

    def batches(self, epoch, skip):
        strategy, steps = self.searcher.strategy, self.steps_per_epoch
        train = distributed_epoch(strategy, self.inputs.train, epoch, skip, steps)
        arch = None
        if self.searcher.config.search_mode == "alternate":
            arch = distributed_epoch(strategy, self.inputs.arch, epoch, skip, steps)
        if not self._signed:
            self.searcher.use_batch_signature(train.element_spec,
                                              None if arch is None else arch.element_spec)
            self._signed = True
        if arch is not None:
            return zip(train, arch)
        return ((batch, None) for batch in train)

    def train_step(self, batch):
        return self.searcher.search_step(*batch)

    def non_finite_variables(self):
        import numpy as np  # pylint: disable=import-outside-toplevel
        return [v.path for v in self.searcher.model.architecture_variables
                if not np.all(np.isfinite(v.numpy()))]

    def end_epoch(self, epoch):
        valid = self.searcher.evaluate(self.valid_data)
        # Through a tensor: a constant rate is a (distributed) variable.
        record = {"learning_rate": float(tf.convert_to_tensor(
                      self.searcher.weight_optimizer.learning_rate)),
                  "arch_learning_rate": float(tf.convert_to_tensor(
                      self.searcher.arch_optimizer.learning_rate)),
                  **{f"valid_{k}": v for k, v in valid.items()},
                  "arch_entropy": self.space.selection_entropy(self.searcher.model)}
        if self.pictures is not None:
            record.update(self.pictures.end_epoch(epoch))
        return record

    def summaries(self, epoch):
        if self.pictures is not None:
            self.pictures.write_summaries(epoch)


def make_searcher(model, inputs, config, strategy, task=None):
    """A Searcher whose epoch is what every input pipeline of `strategy` can feed."""
    steps_per_epoch = inputs.distributed_steps_per_epoch(num_input_pipelines(strategy),
                                                         strategy.num_replicas_in_sync)
    if steps_per_epoch < 1:
        raise ValueError(f"{inputs.sizes()['train']} training examples give no full batch of "
                         f"{inputs.batch_size} per step; use more training data or lower "
                         "--batch_size.")
    return Searcher(model, config, steps_per_epoch, strategy=strategy,
                    global_batch_size=inputs.batch_size, task=task)


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


#: Entries of search_config.json that a resumed search may change: runtime
#: state (the current temperature, layer names, dtype objects) and the
#: extendable budget.
SEARCH_RUNTIME_SETTINGS = ("temperature", "name", "trainable", "dtype", "epochs")


def check_same_search(model_dir, model, config):
    """Refuses to resume a checkpoint written by a differently configured search.

    Raises:
      ValueError: naming each differing setting.
      RunFileDamaged: ``search_config.json`` is not complete JSON (e.g.
        truncated) or not an object: one line naming it, nothing changed.
    """
    path = os.path.join(model_dir, "search_config.json")
    if not os.path.exists(path):
        return
    saved = read_json(path)
    if not isinstance(saved, dict):
        raise RunFileDamaged(f"{path} is damaged (a JSON {type(saved).__name__}, not the object "
                             "a search writes); nothing was changed.")
    current = {"search": dataclasses.asdict(config), "model": model.get_config()}
    # The run-identity comparison (one mechanism for "the same run?"): runtime
    # state and the extendable budget are not the search's identity.
    differences = [f"{key.split('.', 1)[1]}: checkpoint {old!r}, now {new!r}"
                   for key, old, new in identity_differences(
                       {section: saved.get(section) or {} for section in current}, current,
                       ignored_names=SEARCH_RUNTIME_SETTINGS)]
    if differences:
        raise ValueError(f"{model_dir} holds a checkpoint of a different search ("
                         + "; ".join(differences) + "). Use a new --model_dir, or rerun with "
                         "the original settings to resume.")


def _child_evaluation(searcher, inputs, valid_data, child_weights, bn_recalibration_batches):
    """Validation metrics of the derived child with inherited weights, and its
    headline metric after re-estimating batch-norm statistics (supernet state
    restored)."""
    child = searcher.evaluate(valid_data, child_weights)
    recalibrated = None
    if bn_recalibration_batches:
        supernet_state = searcher.snapshot_state()
        train = searcher.distribute(lambda context: inputs.train(searcher.config.epochs,
                                                                  context))
        searcher.recalibrate_batch_norm(train, child_weights, bn_recalibration_batches)
        recalibrated = searcher.evaluate(valid_data, child_weights)[searcher.task.headline]
        searcher.restore_snapshot(supernet_state)
    return child, recalibrated


def run_search(model, inputs, config, model_dir, *, space="darts_cnn", task=None,
               strategy=None, verbose=1, metadata=None, checkpoint_every_steps=200,
               bn_recalibration_batches=0, callbacks=None):
    """Runs (or resumes) a whole search and writes its artifacts.

    Re-running with the same `model_dir` resumes from the last checkpoint,
    mid-epoch included, and ends with the same architecture as an
    uninterrupted run.  A SIGTERM checkpoints at the next step boundary and
    raises ``datanas.engine.loop.RunPreempted``.

    Writes into `model_dir` (workers other than the chief write into
    `model_dir/worker_<id>`): ``search_config.json``, ``metrics.jsonl`` (one
    line per epoch), ``tensorboard/``, ``checkpoints/``, ``genotype.json``
    (rule ``config.derivation``) and ``genotype_<rule>.json`` for every rule
    of the space, ``arch_probabilities.json`` and ``search_result.json``; after
    every epoch ``cell_epoch_NNN.json`` (the genotype derived then) and
    TensorBoard images of the probabilities and the derived cell
    (``datanas.searching.epoch_pictures``).

    The derived child is evaluated inside the supernet with the inherited
    weights (paper Table 8); with `bn_recalibration_batches` > 0 it is also
    evaluated after re-estimating batch-norm statistics on that many training
    batches (weights unchanged; the supernet's own statistics are restored).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    space = get_space(space) if isinstance(space, str) else space
    rule = space.canonical_rule(config.derivation)
    strategy = strategy or tf.distribute.get_strategy()
    model_dir = run_directory(strategy, model_dir)
    searcher = make_searcher(model, inputs, config, strategy, task)
    if verbose:
        note = ("only the sampled ops run, through small shared compiled functions"
                if searcher.execution == "host" else
                "the step is compiled as one graph first: a one-time build that can take "
                "minutes on a CPU")
        print(f"Search steps: {searcher.execution} execution ({config.epochs} epochs x "
              f"{searcher.steps_per_epoch} steps; --execution={config.execution}): {note}.",
              flush=True)
    if os.path.isdir(os.path.join(model_dir, "checkpoints")):
        check_same_search(model_dir, model, config)
    write_search_config(model_dir, searcher, inputs, dataclasses.asdict(config), metadata)
    valid_data = searcher.distribute(inputs.validation)
    headline = searcher.task.headline
    started = time.time()
    pictures = EpochPictures(space, model, model_dir, rule=rule, seed=config.seed,
                             verbose=verbose)
    loop = run_loop(SearchProgram(searcher, space, inputs, valid_data, pictures), model_dir,
                    verbose=verbose,
                    checkpoint_every_steps=checkpoint_every_steps,
                    log_keys=[f"valid_{headline}", "valid_loss", "arch_entropy"],
                    callbacks=callbacks)

    genotypes = {name: space.derive(model, name, config.seed) for name in space.derivation_rules}
    for name, genotype in genotypes.items():
        write_genotype(genotype, os.path.join(model_dir, f"genotype_{name}.json"))
    genotype = genotypes[rule]
    write_genotype(genotype, os.path.join(model_dir, "genotype.json"))
    write_json_atomic(os.path.join(model_dir, "arch_probabilities.json"),
                      space.probabilities(model))
    child, recalibrated = _child_evaluation(searcher, inputs, valid_data,
                                            space.child_weights(model, genotype),
                                            bn_recalibration_batches)
    final = {
        "derivation": rule,
        f"supernet_valid_{headline}": (loop.history[-1][f"valid_{headline}"]
                                       if loop.history else None),
        f"child_valid_{headline}_inherited_weights": child[headline],
        f"child_valid_{headline}_recalibrated_bn": recalibrated,
        "bn_recalibration_batches": bn_recalibration_batches,
        **space.describe(genotype),
        **space.resource_summary(model, genotype),
        "search_seconds_this_process": time.time() - started,
        "steps": int(searcher.step.numpy()),
        "execution": searcher.execution,
    }
    write_json_atomic(os.path.join(model_dir, SEARCH_RESULT_FILE), final)
    if verbose:
        print(genotype.summary())
        facts = {k: v for k, v in space.describe(genotype).items() if k != "op_counts"}
        print(f"{facts}; derived child (inherited weights) "
              f"valid_{headline}={child[headline]:.4f}; genotype written to "
              f"{os.path.join(model_dir, 'genotype.json')}", flush=True)
    return SearchResult(genotype=genotype, genotypes=genotypes, history=loop.history,
                        final=final)
