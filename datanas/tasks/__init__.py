"""Tasks: loss, metrics and batch layout (see base.py)."""

from datanas.tasks.base import Task
from datanas.tasks.classification import ClassificationTask

__all__ = ["Task", "ClassificationTask"]
