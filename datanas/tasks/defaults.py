"""The task a model's outputs imply when the caller names none.

Generic code (the searcher, the trainer) asks ``default_task(model)``
instead of assuming a kind of problem.  A model whose head is a
``ClassificationHead``, or that states ``num_classes`` (the final image
networks), is scored as classification; any other model needs its task
passed explicitly.
"""

from datanas.core.heads import ClassificationHead
from datanas.tasks.classification import ClassificationTask

__all__ = ["default_task"]


def default_task(model, **classification_args):
    """The Task of `model`'s outputs; ValueError when they do not say.

    Args:
      model: a supernet or final network.
      **classification_args: passed to ClassificationTask (label_smoothing).
    """
    head = getattr(model, "head", None)
    if isinstance(head, ClassificationHead):
        return ClassificationTask(head.num_classes, **classification_args)
    num_classes = getattr(model, "num_classes", None)
    if head is None and isinstance(num_classes, int):
        return ClassificationTask(num_classes, **classification_args)
    raise ValueError(f"{type(model).__name__}'s outputs do not name their task; pass task= "
                     "(a datanas.tasks Task).")
