"""One search or one training, from prepared data to a finished run directory.

``datanas.search`` / ``datanas.train`` and the image trainers
(``trainers.search_cifar``, ``trainers.train_cifar``) differ in
where their settings come from (keyword arguments or flags) and in what
they record as the run's identity; everything after that goes through the
two classes here, so the Python API and the command line cannot drift
apart:

    job = SearchJob("data", dataset, inputs, config, shape)
    job.build()                    # bad settings raise here, before any file is written
    run.begin()                    # the caller's plan: lock, identity, flag files
    result = job.run(model_dir)    # searches; returns the SearchResult

Each ``run`` releases the run directory's lock when it ends, so a longer
process (a notebook) can start another run in the same directory.
"""

import contextlib
import dataclasses
import os

import keras

from datanas.engine.run_files import read_json, read_jsonl
from datanas.engine.run_lock import release_run_lock
from datanas.engine.strategy import is_chief
from datanas.searching.runs import build_search, run_method_search
from datanas.spaces import get_space
from datanas.training.export import MODEL_FILE
from datanas.training.trainer import run_training

__all__ = ["SearchJob", "SearchResult", "TrainJob"]


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What a search found, read from its run directory.

    Attributes:
      genotype: the method's derived cells.
      genotypes: ``{rule: genotype}`` of every derivation rule of the space.
      probabilities: the final architecture probabilities
        (``arch_probabilities.json``; None for random search).
      history: per-epoch metrics records (``metrics.jsonl``).
      final: the search's summary (``search_result.json``).
      model_dir: the run directory.
    """
    genotype: object
    genotypes: dict
    probabilities: dict | None
    history: list
    final: dict
    model_dir: str

    @classmethod
    def from_dir(cls, model_dir, space="darts_cnn"):
        """The result of the finished search in `model_dir`; its genotype
        files are read in `space`'s format (``genotype_from_dict``)."""
        space = get_space(space) if isinstance(space, str) else space

        def read(name):
            return read_json(os.path.join(model_dir, name))

        def present(name):
            return os.path.exists(os.path.join(model_dir, name))

        genotypes = {name[len("genotype_"):-len(".json")]: space.genotype_from_dict(read(name))
                     for name in sorted(os.listdir(model_dir))
                     if name.startswith("genotype_") and name.endswith(".json")}
        return cls(genotype=space.genotype_from_dict(read("genotype.json")),
                   genotypes=genotypes,
                   probabilities=read("arch_probabilities.json")
                   if present("arch_probabilities.json") else None,
                   history=read_jsonl(os.path.join(model_dir, "metrics.jsonl"))
                   if present("metrics.jsonl") else [],
                   final=read("search_result.json") if present("search_result.json") else {},
                   model_dir=model_dir)


class SearchJob:
    """A search of `method` on prepared inputs (``data_tf.search_inputs``).

    Args:
      method: a search method name ("data", "gdas", "darts", "random", ...).
      dataset: the ImageDataset (its class count and image shape size the supernet).
      inputs: the search's input pipelines (``make_search_inputs``).
      config: the SearchConfig before the method's settings are applied.
      shape: the space's supernet settings (``space.settings_class``).
      space: the search space (name or object).
      method_args: ``resolve_method``'s keywords (search_mode, derivation,
        darts_order, random_candidates, random_epochs).
      task: a datanas.tasks Task (None: the space's default head and the
        classification task over its outputs).
      strategy: a tf.distribute strategy (None: the default one).
    """

    def __init__(self, method, dataset, inputs, config, shape, *, space="darts_cnn",
                 method_args=None, task=None, strategy=None):
        self.method, self.dataset, self.inputs = method, dataset, inputs
        self.base_config, self.shape, self.space = config, shape, space
        self.method_args = dict(method_args or {})
        self.task, self.strategy = task, strategy
        self.model = self.config = None

    def build(self):
        """Builds the supernet (ValueError for a bad setting; nothing is written)."""
        self.model, self.config = build_search(
            self.method, self.dataset.num_classes, self.dataset.image_shape, self.base_config,
            self.shape, space=self.space, strategy=self.strategy, task=self.task,
            **self.method_args)
        return self.model

    def run(self, model_dir, *, callbacks=None, verbose=1, checkpoint_every_steps=200,
            metadata=None):
        """Searches into `model_dir` (resuming what is there) and returns the
        SearchResult (None in a non-chief worker of a multi-worker run: the
        chief writes the run's files)."""
        if self.model is None:
            self.build()
        try:
            run_method_search(self.method, self.model, self.inputs, self.config, model_dir,
                              space=self.space,
                              random_candidates=self.method_args.get("random_candidates", 8),
                              strategy=self.strategy, task=self.task, verbose=verbose,
                              callbacks=callbacks, checkpoint_every_steps=checkpoint_every_steps,
                              metadata={"dataset": self.dataset.name,
                                        "data_source": self.dataset.source, **(metadata or {})})
        finally:
            release_run_lock(model_dir)
        if self.strategy is not None and not is_chief(self.strategy):
            return None
        return SearchResult.from_dir(model_dir, self.space)


class TrainJob:
    """Training the final network of a genotype from scratch on prepared
    inputs (``data_tf.train_inputs``).

    Args:
      genotype: the cells.
      dataset: the ImageDataset.
      inputs: the training input pipelines (``make_train_inputs``).
      config: a TrainConfig.
      space: the search space whose final network is built.
      setting: which of its final networks ("cifar", "imagenet", ...).
      strategy: a tf.distribute strategy (None: the default one).
      task: a datanas.tasks Task: its head (``Task.build_head``) ends the
        network and its loss trains it (None: classification over
        ``dataset.num_classes``, the network's own head).
      **network: the final network's settings (layers, init_channels,
        auxiliary, stem_stride, ...).
    """

    def __init__(self, genotype, dataset, inputs, config, *, space="darts_cnn", setting="cifar",
                 strategy=None, task=None, **network):
        self.genotype, self.dataset, self.inputs, self.config = genotype, dataset, inputs, config
        self.space = get_space(space) if isinstance(space, str) else space
        self.setting, self.strategy, self.task, self.network = setting, strategy, task, network
        self.model = None

    def build(self):
        """Builds the network (ValueError for a bad setting; nothing is written)."""
        scope = self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()
        head = self.task.build_head() if self.task is not None else None
        with scope:
            self.model = self.space.final_network(self.genotype, setting=self.setting,
                                                  num_classes=self.dataset.num_classes,
                                                  **({"head": head} if head is not None else {}),
                                                  **self.network)
            self.model.build((None,) + tuple(self.dataset.image_shape))
        return self.model

    def run(self, model_dir, *, include_test=False, test_at_end=False, export_dir=None,
            callbacks=None, verbose=1, checkpoint_every_steps=0, metadata=None,
            global_batch_size=None):
        """Trains into `model_dir` (resuming what is there); returns the network.

        The validation split (when the inputs have one) picks the best
        epoch.  `include_test`: evaluate the test split every epoch;
        `test_at_end`: once, after the last epoch.  Neither by default."""
        if self.model is None:
            self.build()
        eval_sets = self.inputs.eval_sets(include_test=include_test)
        try:
            run_training(self.model, self.inputs.train, eval_sets, self.config, model_dir,
                         final_eval_sets=self.inputs.test_set() if test_at_end else None,
                         strategy=self.strategy, global_batch_size=global_batch_size,
                         steps_per_epoch=self.inputs.steps_per_epoch,
                         image_shape=self.dataset.image_shape,
                         select_on="valid" if "valid" in eval_sets else None,
                         export_dir=export_dir, verbose=verbose, callbacks=callbacks,
                         task=self.task,
                         checkpoint_every_steps=checkpoint_every_steps,
                         metadata={"dataset": self.dataset.name, **(metadata or {})})
        finally:
            release_run_lock(model_dir)
        return self.model

    def trained_model(self, model_dir):
        """The finished run's network, read back from its ``model.keras``."""
        return keras.models.load_model(os.path.join(model_dir, MODEL_FILE))
