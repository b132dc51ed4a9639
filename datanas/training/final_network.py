"""What the trainer needs of a network built from a genotype.

``SearchSpace.final_network(genotype, ...)`` returns a Keras model with
these members; ``GenotypeTrainer`` and ``run_training`` use no others.
"""

from typing import Protocol, runtime_checkable

__all__ = ["FinalNetwork"]


@runtime_checkable
class FinalNetwork(Protocol):
    """A Keras model trained from scratch by ``datanas.training``."""

    #: Non-trainable scalar variable: the drop-path probability of the epoch
    #: (the trainer ramps it; a network without drop-path ignores it).  A
    #: ``genotype`` attribute, when there is one, is drawn into TensorBoard.
    drop_path_rate: object

    def logits_and_auxiliary(self, inputs, training=None):
        """(outputs, auxiliary outputs or None) of a training forward pass."""

    def __call__(self, inputs, training=None):
        """The outputs (evaluation and export)."""
