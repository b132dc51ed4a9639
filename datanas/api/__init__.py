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

from datanas.api.functions import load_genotype, save_genotype, search, train
from datanas.api.jobs import SearchJob, SearchResult, TrainJob

__all__ = ["search", "train", "SearchResult", "load_genotype", "save_genotype", "SearchJob",
           "TrainJob"]
