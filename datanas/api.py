"""The Python API: search a cell on your own images, train it, save it.

    import datanas
    result = datanas.search((x, y), epochs=4)            # numpy, tf.data, a folder...
    model = datanas.train(result.genotype, (x, y), epochs=10)
    model.save("model.keras")                             # predicts on raw images
    datanas.save_genotype(result.genotype, "cell.json")

Data (``train_data``) may be numpy arrays ``(x, y)`` (``x`` ``[N, H, W, C]``
uint8 on 0..255 or float on [0, 1]; ``y`` integer labels), a
``tf.data.Dataset`` of ``(image, label)`` examples or batches, a path to a
class-folder tree (one sub-folder per class, as
``keras.utils.image_dataset_from_directory`` reads), ``"tfds:<name>"`` for a
prepared TFDS dataset, a built-in name (``"fashion_mnist"``, ``"cifar10"``,
``"digits"``) or a ``data_tf`` ``ImageDataset``.  ``validation_data`` (arrays
or a ``tf.data.Dataset``, like ``train_data``) is the validation split;
without it one is carved from the training images (``validation_fraction``).
Nothing here ever looks at a test split.

``model_dir=None`` works in a new temporary directory (its path is in the
result).  A given ``model_dir`` gets the command-line trainers' run files,
identity check and exact resume: calling again with the same settings
resumes an interrupted run or reads a finished one back; other settings are
refused in one line naming the difference.  Both functions seed Python,
NumPy and TensorFlow with ``seed`` (``keras.utils.set_random_seed``), as the
command-line trainers do, so a run is reproducible.

``callbacks`` are Keras callbacks; each gets ``on_epoch_end(epoch, logs)``
with the metrics the trainers log for that epoch (``logs`` is the epoch's
``metrics.jsonl`` record).
"""

import dataclasses
import hashlib
import json
import os
import tempfile

import keras
import numpy as np

from datanas.core.image_standardization import ImageStandardization
from datanas.engine.run_files import read_jsonl
from datanas.engine.run_identity import FORMAT_VERSION, begin_run, plan_run
from datanas.engine.run_lock import release_run_lock
from datanas.searching.config import SearchConfig
from datanas.searching.runs import build_search, resolve_method, run_method_search
from datanas.spaces.darts_cnn.space import SupernetShape
from datanas.spaces import get_space
from datanas.spaces.darts_cnn.genotype import Genotype, load_genotype as _load_genotype
from datanas.spaces.darts_cnn.networks import NetworkCIFAR
from datanas.training.trainer import TrainConfig, run_training
from datanas.tasks import ClassificationTask

__all__ = ["search", "train", "SearchResult", "load_genotype", "save_genotype"]

#: search(**settings): keywords of the search configuration and of the
#: supernet shape a caller may set beyond the named arguments.
_CONFIG_SETTINGS = tuple(f.name for f in dataclasses.fields(SearchConfig)
                         if f.name not in ("epochs", "seed", "search_mode", "derivation",
                                           "unrolled"))
_SHAPE_SETTINGS = tuple(f.name for f in dataclasses.fields(SupernetShape)
                        if f.name not in ("num_cells", "init_channels", "num_nodes",
                                          "num_samples"))
_METHOD_SETTINGS = ("search_mode", "derivation", "darts_order", "random_candidates")


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What a search found, read from its run directory.

    Attributes:
      genotype: the method's derived cells (``Genotype``).
      genotypes: ``{rule: Genotype}`` of every derivation rule of the space.
      probabilities: the final architecture probabilities
        (``arch_probabilities.json``; None for random search).
      history: per-epoch metrics records (``metrics.jsonl``).
      final: the search's summary (``search_result.json``).
      model_dir: the run directory.
    """
    genotype: Genotype
    genotypes: dict
    probabilities: dict | None
    history: list
    final: dict
    model_dir: str

    @classmethod
    def from_dir(cls, model_dir):
        """The result of the finished search in `model_dir`."""
        def read(name):
            path = os.path.join(model_dir, name)
            if not os.path.exists(path):
                return None
            with open(path) as handle:
                return json.load(handle)
        genotypes = {name[len("genotype_"):-len(".json")]: _load_genotype(
            os.path.join(model_dir, name)) for name in sorted(os.listdir(model_dir))
            if name.startswith("genotype_") and name.endswith(".json")}
        metrics = os.path.join(model_dir, "metrics.jsonl")
        return cls(genotype=_load_genotype(os.path.join(model_dir, "genotype.json")),
                   genotypes=genotypes, probabilities=read("arch_probabilities.json"),
                   history=read_jsonl(metrics) if os.path.exists(metrics) else [],
                   final=read("search_result.json") or {}, model_dir=model_dir)


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


# -- data ------------------------------------------------------------------------------------
def _image_data(train_data, validation_data, image_size):
    """(ImageDataset, validation (images, labels) or None) of the caller's data."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from data_tf.image_datasets import ImageDataset, load_image_dataset  # pylint: disable=import-outside-toplevel
    from data_tf.own_images import (ImageDataError, dataset_from_arrays,  # pylint: disable=import-outside-toplevel
                                    dataset_from_folder, dataset_from_tf_data)

    if isinstance(train_data, ImageDataset):
        dataset = train_data
    elif isinstance(train_data, (tuple, list)) and len(train_data) == 2:
        x_valid = y_valid = None
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise ImageDataError("validation_data must be (x, y) arrays like train_data, "
                                     f"got {type(validation_data).__name__}")
            x_valid, y_valid = validation_data
        dataset = dataset_from_arrays(train_data[0], train_data[1], x_test=x_valid,
                                      y_test=y_valid)
        validation_data = None if x_valid is None else (dataset.test_images, dataset.test_labels)
        return dataset, validation_data
    elif isinstance(train_data, tf.data.Dataset):
        if validation_data is not None and not isinstance(validation_data, tf.data.Dataset):
            raise ImageDataError("validation_data must be a tf.data.Dataset like train_data, "
                                 f"got {type(validation_data).__name__}")
        dataset = dataset_from_tf_data(train_data, test=validation_data, image_size=image_size)
        if validation_data is not None:
            return dataset, (dataset.test_images, dataset.test_labels)
        return dataset, None
    elif isinstance(train_data, (str, os.PathLike)):
        name = os.fspath(train_data)
        if os.path.isdir(name):
            dataset = dataset_from_folder(name, image_size=image_size)
        else:
            dataset = load_image_dataset(name, image_size=image_size)
    else:
        raise ImageDataError(
            "train_data must be (x, y) numpy arrays, a tf.data.Dataset, a class-folder path, "
            f"'tfds:<name>', a built-in dataset name or an ImageDataset; got "
            f"{type(train_data).__name__}")
    if validation_data is not None:
        raise ImageDataError("validation_data goes with (x, y) arrays or a tf.data.Dataset; for "
                             "a folder or a named dataset the validation split is carved from "
                             "its training images (validation_fraction)")
    return dataset, None


def _fingerprint(dataset, validation):
    """A digest of the images and labels a run learns from (its identity)."""
    digest = hashlib.sha256()
    arrays = [dataset.train_images, dataset.train_labels]
    if validation is not None:
        arrays += list(validation)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


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
    dataset, validation = _image_data(train_data, validation_data, image_size)
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
                         "fingerprint": _fingerprint(dataset, validation)}}
    model_dir, plan = _prepare(model_dir, identity, "search_result.json", "datanas-search-")
    if plan.status != "finished":
        space = get_space("darts_cnn")
        # Built before the first byte is written: a bad setting leaves no run behind.
        keras.utils.set_random_seed(seed)
        task = ClassificationTask(dataset.num_classes)
        model, config = build_search(method, dataset.num_classes, dataset.image_shape,
                                     base_config, shape, task=task, **method_args)
        begin_run(plan, result_files=("search_result.json", "genotype.json",
                                      "arch_probabilities.json",
                                      *(f"genotype_{rule}.json"
                                        for rule in space.derivation_rules)))
        try:
            run_method_search(method, model, inputs, config, model_dir, task=task,
                              random_candidates=method_args.get("random_candidates", 8),
                              verbose=verbose, callbacks=callbacks,
                              metadata={"dataset": dataset.name, "data_source": dataset.source,
                                        "api": "datanas.search"})
        finally:
            release_run_lock(model_dir)
    elif callbacks:
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
    dataset, validation = _image_data(train_data, validation_data, image_size)
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
                         "fingerprint": _fingerprint(dataset, validation)}}
    model_dir, plan = _prepare(model_dir, identity, "results.json", "datanas-train-")
    if plan.status == "finished":
        if callbacks:
            _replay(callbacks, os.path.join(model_dir, "metrics.jsonl"))
        network = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    else:
        keras.utils.set_random_seed(seed)
        network = NetworkCIFAR(genotype, num_classes=dataset.num_classes,
                               init_channels=init_channels, layers=layers,
                               auxiliary=auxiliary_weight > 0)
        network.build((None,) + tuple(dataset.image_shape))
        begin_run(plan, result_files=("results.json", "model.keras"))
        try:
            eval_sets = inputs.eval_sets(include_test=False)
            run_training(network, inputs.train, eval_sets, config, model_dir,
                         steps_per_epoch=inputs.steps_per_epoch,
                         image_shape=dataset.image_shape,
                         select_on="valid" if "valid" in eval_sets else None,
                         verbose=verbose, global_batch_size=batch_size, callbacks=callbacks,
                         metadata={"dataset": dataset.name, "api": "datanas.train"})
        finally:
            release_run_lock(model_dir)
    images = keras.Input(shape=tuple(dataset.image_shape), dtype=str(dataset.train_images.dtype),
                         name="images")
    scale = 1.0 / 255.0 if dataset.train_images.dtype == np.uint8 else 1.0
    logits = network(ImageStandardization(dataset.mean, dataset.std, scale,
                                          name="standardization")(images))
    return keras.Model(images, logits, name="datanas_network")
