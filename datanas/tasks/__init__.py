"""Tasks: loss, metrics and batch layout (see base.py)."""

from datanas.tasks.base import Task
from datanas.tasks.classification import ClassificationTask
from datanas.tasks.defaults import default_task
from datanas.tasks.language_modeling import LanguageModelingTask
from datanas.tasks.segmentation import SegmentationTask

__all__ = ["Task", "ClassificationTask", "LanguageModelingTask", "SegmentationTask",
           "default_task"]
