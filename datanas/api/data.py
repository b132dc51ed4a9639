"""The caller's data for the API: numpy arrays, tf.data, folders, named datasets."""

import hashlib
import os

import numpy as np

__all__ = ["image_data", "fingerprint"]


def image_data(train_data, validation_data, image_size):
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


def fingerprint(dataset, validation):
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
