"""The seam between the engine and what is learned: a Task.

A task turns a batch into (inputs, targets), says how outputs are scored
per example (the loss the searcher and trainer scale by the global batch),
which sums a training step reports, and which sums an evaluation
accumulates and how they become metrics: classification, language
modelling (carried state, perplexity) and segmentation (per-pixel loss with
an ignore label, mean IoU from a confusion matrix).
"""

import abc

__all__ = ["Task"]


class Task(abc.ABC):
    """Loss and metrics of one kind of problem."""

    #: Names of the per-step training metrics (means over the global batch).
    train_metrics = ("loss",)
    #: The evaluation metric a run reports and selects on, and its direction.
    headline = "accuracy"
    headline_higher_is_better = True
    #: Whether a replica may get an empty evaluation batch (a last partial
    #: batch split over replicas); steps then guard the sums with a tf.cond.
    #: Tasks whose batches always split evenly set False, which also keeps
    #: cross-replica ops inside the model (e.g. an all-gather) out of a cond.
    empty_batches_possible = True

    @property
    def eval_names(self):
        """Names of eval_sums' entries, in a fixed order."""
        raise NotImplementedError

    @property
    def eval_shapes(self):
        """{name: shape} of eval_sums' entries: () for a scalar (the default),
        e.g. (C, C) for a confusion matrix.  Sums of any shape are added
        elementwise over replicas and batches."""
        return {name: () for name in self.eval_names}

    @property
    def log_metrics(self):
        """Evaluation metrics printed at each epoch end (prefixed by the split)."""
        return ("loss", self.headline)

    def build_head(self, name="head"):
        """The Keras layer from a search space's body (its last feature map)
        to this task's outputs, or None where the space's network ends in
        its own outputs (a language model's tied decoder, a segmentation
        decoder)."""
        del name
        return None

    def unpack(self, batch):
        """(inputs, targets) of a batch from the input pipeline."""
        inputs, targets = batch
        return inputs, targets

    @abc.abstractmethod
    def per_example_loss(self, targets, outputs):
        """[examples] losses (summed then divided by the global batch)."""

    @abc.abstractmethod
    def train_sums(self, targets, outputs, per_example_loss):
        """{name: scalar sum over this replica's examples} for train_metrics."""

    @abc.abstractmethod
    def eval_sums(self, targets, outputs):
        """{name: float32 sum of shape eval_shapes[name]} accumulated over an
        evaluation split."""

    @abc.abstractmethod
    def eval_metrics(self, sums, count):
        """Metrics of a split from its accumulated sums and example count
        (> 0: callers go through split_metrics, which refuses an empty split)."""

    def split_metrics(self, sums, count):
        """eval_metrics of a whole split; an error when it had no examples,
        whose metrics (loss 0, accuracy 0) would read as a measurement."""
        if count == 0:
            raise ValueError("evaluation: the split yielded no examples (an empty dataset, or "
                             "one smaller than a batch with drop_remainder); give it at least "
                             "one batch, e.g. a larger validation_fraction or train_size.")
        return self.eval_metrics(sums, count)

    def count(self, targets):
        """Examples in a batch (the unit the sums are divided by)."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        return tf.shape(targets)[0]
