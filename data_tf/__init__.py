"""Image and text datasets, deterministic splits and tf.data pipelines for datanas.

Names are imported on first use, so that importing ``data_tf`` (e.g. for
the dataset names the flags offer) does not load TensorFlow before the
trainer has parsed its flags and configured TensorFlow's determinism.
"""

import importlib

_EXPORTS = {
    "SUPPORTED_IMAGE_DATASETS": "image_datasets",
    "DatasetNotFoundError": "image_datasets",
    "ImageDataset": "image_datasets",
    "load_image_dataset": "image_datasets",
    "AugmentConfig": "image_pipelines",
    "make_image_pipeline": "image_pipelines",
    "train_validation_split": "splits",
    "take_subset": "splits",
    "split_in_halves": "splits",
    "SUPPORTED_TEXT_DATASETS": "text_corpora",
    "TextCorpus": "text_corpora",
    "load_text_corpus": "text_corpora",
    "STREAM_TRAIN": "lm_inputs",
    "STREAM_ARCH": "lm_inputs",
    "STREAM_EVAL": "lm_inputs",
    "batchify": "lm_inputs",
    "bptt_windows": "lm_inputs",
    "LMStream": "lm_inputs",
    "LMSearchInputs": "lm_inputs",
    "LMTrainInputs": "lm_inputs",
    "make_lm_search_inputs": "lm_inputs",
    "make_lm_train_inputs": "lm_inputs",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'data_tf' has no attribute {name!r}")
    return getattr(importlib.import_module(f"data_tf.{_EXPORTS[name]}"), name)
