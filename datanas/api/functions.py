"""`datanas.search` and `datanas.train`, and genotype files (see the package docstring)."""

import dataclasses
import json
import os
import tempfile

import keras
import numpy as np

from datanas.api.data import fingerprint, image_data
from datanas.api.jobs import SearchJob, SearchResult, TrainJob
from datanas.core.image_standardization import ImageStandardization
from datanas.engine.run_files import read_jsonl
from datanas.engine.run_identity import FORMAT_VERSION, begin_run, plan_run
from datanas.searching.config import SearchConfig
from datanas.searching.run import SEARCH_RESULT_FILE, search_result_files
from datanas.searching.runs import resolve_method
from datanas.spaces import get_space
from datanas.spaces.darts_cnn.genotype import Genotype, load_genotype as _load_genotype
from datanas.spaces.darts_cnn.space import SupernetShape
from datanas.training.export import TRAIN_RESULT_FILE, TRAIN_RESULT_FILES
from datanas.training.trainer import TrainConfig
from datanas.tasks import ClassificationTask

__all__ = ["search", "train", "load_genotype", "save_genotype"]

#: search(**settings): keywords of the search configuration and of the
#: supernet shape a caller may set beyond the named arguments.
_CONFIG_SETTINGS = tuple(f.name for f in dataclasses.fields(SearchConfig)
                         if f.name not in ("epochs", "seed", "search_mode", "derivation",
                                           "unrolled"))
_SHAPE_SETTINGS = tuple(f.name for f in dataclasses.fields(SupernetShape)
                        if f.name not in ("num_cells", "init_channels", "num_nodes",
                                          "num_samples"))
_METHOD_SETTINGS = ("search_mode", "derivation", "darts_order", "random_candidates")


def load_genotype(path):
    """The Genotype in a genotype JSON file or a search's run directory."""
    return _load_genotype(path)


def save_genotype(genotype, path):
    """Writes `genotype` (a Genotype or its dict) as JSON; refuses to
    replace an existing file."""
    if not isinstance(genotype, Genotype):
        genotype = Genotype.from_dict(genotype)
    if os.path.exists(path):
        raise FileExistsError(f"{path} exists; save_genotype does not replace files.")
    with open(path, "x") as handle:
        json.dump(genotype.to_dict(), handle, indent=1)
    return path


def _split(settings, allowed, what):
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise TypeError(f"{what}() got unknown setting(s) {', '.join(unknown)}; allowed: "
                        f"{', '.join(sorted(allowed))}.")


def _prepare(model_dir, identity, result_file, prefix):
    """(model_dir, plan) for a run of `identity`; a new temporary directory
    when `model_dir` is None."""
    model_dir = model_dir or tempfile.mkdtemp(prefix=prefix)
    plan = plan_run(model_dir, identity, result_file=result_file)
    return model_dir, plan


# -- search ----------------------------------------------------------------------------------
def search(train_data, validation_data=None, *, method="data", num_samples=4, epochs=10,
           model_dir=None, callbacks=None, batch_size=64, layers=5, init_channels=8, nodes=4,
           train_size=None, validation_fraction=0.2, image_size=None, seed=0, verbose=1,
           **settings):
    """Searches a normal and a reduction cell on image data.

    Args:
      train_data, validation_data: see the module docstring.
      method: "data" (DATA, the default), "gdas", "snas_like", "darts" or "random".
      num_samples: M of DATA's estimator.
      epochs: search epochs.
      model_dir: the run directory (None: a new temporary one).
      callbacks: Keras callbacks (``on_epoch_end(epoch, logs)`` per epoch).
      batch_size, layers, init_channels, nodes: the supernet and its batches.
      train_size: a class-balanced subset of the training images (None: all).
      validation_fraction: carved from training when there is no validation_data.
      image_size: resize images to this square size (folders, tf.data, TFDS).
      seed: seeds the run.
      verbose: 0 silent, 1 progress.
      **settings: any other field of the search configuration (e.g.
        ``learning_rate``, ``arch_learning_rate``, ``egs_gradient``,
        ``edge_combine``, ``initial_temperature``), of the supernet shape
        (``egs_scope``, ``primitives``, ``cost``, ``max_params`` ...), or
        ``search_mode``, ``derivation``, ``darts_order``, ``random_candidates``.

    Returns:
      a SearchResult.
    Raises:
      ValueError (data_tf ImageDataError included) / TypeError: one line
        naming the bad value and what is allowed; RunRefused when
        `model_dir` holds another run.
    """
    _split(settings, _CONFIG_SETTINGS + _SHAPE_SETTINGS + _METHOD_SETTINGS, "search")
    dataset, validation = image_data(train_data, validation_data, image_size)
    base_config = SearchConfig(epochs=epochs, seed=seed,
                               **{k: v for k, v in settings.items() if k in _CONFIG_SETTINGS})
    shape = SupernetShape(num_cells=layers, init_channels=init_channels, num_nodes=nodes,
                          num_samples=num_samples,
                          **{k: v for k, v in settings.items() if k in _SHAPE_SETTINGS})
    method_args = {k: v for k, v in settings.items() if k in _METHOD_SETTINGS}
    network, config = resolve_method(method, base_config, shape, **method_args)
    from data_tf.search_inputs import make_search_inputs  # pylint: disable=import-outside-toplevel
    inputs = make_search_inputs(dataset, batch_size=batch_size, train_size=train_size,
                                validation_fraction=validation_fraction,
                                separate_arch_split=config.search_mode == "alternate",
                                seed=seed, validation=validation)
    identity = {"format": FORMAT_VERSION, "api": "datanas.search", "method": method,
                "network": dict(network), "config": dataclasses.asdict(config),
                "shape": dataclasses.asdict(shape), "method_args": method_args,
                "batch_size": batch_size, "train_size": train_size,
                "validation_fraction": None if validation is not None else validation_fraction,
                "data": {"name": dataset.name, "sizes": inputs.sizes(),
                         "fingerprint": fingerprint(dataset, validation)}}
    model_dir, plan = _prepare(model_dir, identity, SEARCH_RESULT_FILE, "datanas-search-")
    if plan.status != "finished":
        space = get_space("darts_cnn")
        job = SearchJob(method, dataset, inputs, base_config, shape, space=space,
                        method_args=method_args, task=ClassificationTask(dataset.num_classes))
        # Built before the first byte is written: a bad setting leaves no run behind.
        keras.utils.set_random_seed(seed)
        job.build()
        begin_run(plan, result_files=search_result_files([space.name]))
        return job.run(model_dir, verbose=verbose, callbacks=callbacks,
                       metadata={"api": "datanas.search"})
    if callbacks:
        _replay(callbacks, os.path.join(model_dir, "metrics.jsonl"))
    return SearchResult.from_dir(model_dir)


def _replay(callbacks, metrics_path):
    """A finished run read back still tells its callbacks every epoch."""
    for record in read_jsonl(metrics_path):
        for callback in callbacks:
            callback.on_epoch_end(record["epoch"] - 1, dict(record))


# -- training --------------------------------------------------------------------------------
def train(genotype, train_data, validation_data=None, *, epochs=20, layers=8, init_channels=16,
          batch_size=64, learning_rate=0.025, weight_decay=3e-4, auxiliary_weight=0.0,
          drop_path_prob=0.0, cutout=0, train_size=None, validation_fraction=0.1,
          image_size=None, model_dir=None, callbacks=None, seed=0, verbose=1):
    """Trains the network of `genotype` from scratch and returns it.

    The returned ``keras.Model`` takes images as ``train_data`` holds them
    (uint8 on 0..255 or float on [0, 1]) and returns logits: it starts with
    an ``ImageStandardization`` layer holding the training split's
    statistics, so ``model.save("m.keras")`` / ``keras.models.load_model``
    round-trip it.  The weights are those of the epoch with the best
    validation accuracy (validation_data, or `validation_fraction` of the
    training images); no test split is used.

    Args:
      genotype: a Genotype, its dict, a genotype JSON file or a search's
        run directory, or a SearchResult.
      train_data, validation_data: as for `search`.
      epochs, layers, init_channels, batch_size, learning_rate,
      weight_decay, auxiliary_weight, drop_path_prob, cutout: the network
        (``NetworkCIFAR``) and its SGD training (cosine schedule).
      model_dir, callbacks, seed, verbose: as for `search`.
    """
    if isinstance(genotype, SearchResult):
        genotype = genotype.genotype
    elif isinstance(genotype, (str, os.PathLike)):
        genotype = _load_genotype(os.fspath(genotype))
    elif isinstance(genotype, dict):
        genotype = Genotype.from_dict(genotype)
    if not isinstance(genotype, Genotype):
        raise TypeError("genotype must be a Genotype, its dict, a genotype file or run "
                        f"directory, or a SearchResult; got {type(genotype).__name__}.")
    dataset, validation = image_data(train_data, validation_data, image_size)
    config = TrainConfig(epochs=epochs, learning_rate=learning_rate, weight_decay=weight_decay,
                         auxiliary_weight=auxiliary_weight, drop_path_prob=drop_path_prob,
                         seed=seed)
    from data_tf.train_inputs import make_train_inputs  # pylint: disable=import-outside-toplevel
    inputs = make_train_inputs(dataset, batch_size=batch_size, train_size=train_size,
                               validation_fraction=validation_fraction, cutout=cutout, seed=seed,
                               validation=validation)
    identity = {"format": FORMAT_VERSION, "api": "datanas.train",
                "genotype": genotype.to_dict(), "train": dataclasses.asdict(config),
                "network": {"layers": layers, "init_channels": init_channels,
                            "auxiliary": auxiliary_weight > 0},
                "batch_size": batch_size, "train_size": train_size, "cutout": cutout,
                "validation_fraction": None if validation is not None else validation_fraction,
                "data": {"name": dataset.name, "sizes": inputs.sizes(),
                         "fingerprint": fingerprint(dataset, validation)}}
    model_dir, plan = _prepare(model_dir, identity, TRAIN_RESULT_FILE, "datanas-train-")
    job = TrainJob(genotype, dataset, inputs, config, setting="cifar", layers=layers,
                   init_channels=init_channels, auxiliary=auxiliary_weight > 0)
    if plan.status == "finished":
        if callbacks:
            _replay(callbacks, os.path.join(model_dir, "metrics.jsonl"))
        network = job.trained_model(model_dir)
    else:
        keras.utils.set_random_seed(seed)
        job.build()
        begin_run(plan, result_files=TRAIN_RESULT_FILES)
        network = job.run(model_dir, verbose=verbose, global_batch_size=batch_size,
                          callbacks=callbacks, metadata={"api": "datanas.train"})
    images = keras.Input(shape=tuple(dataset.image_shape), dtype=str(dataset.train_images.dtype),
                         name="images")
    scale = 1.0 / 255.0 if dataset.train_images.dtype == np.uint8 else 1.0
    logits = network(ImageStandardization(dataset.mean, dataset.std, scale,
                                          name="standardization")(images))
    return keras.Model(images, logits, name="datanas_network")
