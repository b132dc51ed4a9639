"""Image datasets, deterministic splits and tf.data pipelines for datanas."""

from data_tf.image_datasets import (
    SUPPORTED_IMAGE_DATASETS,
    DatasetNotFoundError,
    ImageDataset,
    load_image_dataset,
)
from data_tf.image_pipelines import AugmentConfig, make_image_pipeline
from data_tf.splits import split_in_halves, take_subset, train_validation_split

__all__ = [
    "SUPPORTED_IMAGE_DATASETS",
    "DatasetNotFoundError",
    "ImageDataset",
    "load_image_dataset",
    "AugmentConfig",
    "make_image_pipeline",
    "train_validation_split",
    "take_subset",
    "split_in_halves",
]
