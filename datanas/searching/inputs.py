"""What a search reads its data from: the ``SearchInputs`` protocol.

``run_search`` and the random search use only these members, so any object
that has them feeds a search (``data_tf.search_inputs.SearchInputs`` for
images, ``data_tf.lm_inputs.LMSearchInputs`` for text, or a test's own).
"""

from typing import Protocol, runtime_checkable

__all__ = ["SearchInputs"]


@runtime_checkable
class SearchInputs(Protocol):
    """The splits of a search's training data."""

    #: The global batch size of a step.
    batch_size: int

    def distributed_steps_per_epoch(self, num_input_pipelines, num_replicas):
        """Steps of one epoch that every input pipeline can feed."""

    def sizes(self):
        """JSON-ready sizes of the splits (``search_config.json``)."""

    def train(self, epoch, input_context=None):
        """The weight-step batches of `epoch` (per-replica batch size)."""

    def arch(self, epoch, input_context=None):
        """The architecture-step batches of `epoch` (alternate mode)."""

    def validation(self, input_context=None):
        """The validation batches."""
