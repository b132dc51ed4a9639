"""Word-level language modelling: next-token cross-entropy and perplexity.

A batch (``data_tf.lm_inputs``) is a dict with ``tokens`` and ``targets``
[rows, T] plus the window's ``reset``/``stream``/``seed``; the model gets the
whole dict (it carries its hidden state between windows) and returns
``{"logits", "temporal", "activation"}`` (``datanas.spaces.darts_rnn``).

* Training loss per row: the mean token cross-entropy of the row plus
  ``temporal_weight`` x TAR (DARTS/AWD-LSTM ``beta``, 1e-3) and
  ``activation_weight`` x AR (``alpha``, 0); the engine divides the sum over
  rows by the global number of rows, i.e. the mean over the batch's tokens
  (all rows of a window have the same length).
* Reported ``loss`` is the plain cross-entropy per token (nats) and
  ``perplexity`` = exp(loss), accumulated over every target token of a
  split (the AWD-LSTM/DARTS evaluation: token-weighted mean over windows).
"""

import math

import tensorflow as tf

from datanas.tasks.base import Task

__all__ = ["LanguageModelingTask", "perplexity"]


def perplexity(mean_cross_entropy):
    """exp of a mean per-token cross-entropy in nats (inf when it overflows)."""
    try:
        return math.exp(mean_cross_entropy)
    except OverflowError:
        return float("inf")


class LanguageModelingTask(Task):
    """Next-token prediction over a vocabulary.

    Args:
      temporal_weight: weight of temporal activation regularisation (beta).
      activation_weight: weight of activation regularisation (alpha).
    """

    train_metrics = ("loss",)
    headline = "perplexity"
    headline_higher_is_better = False
    # Streams are batchified into rows divided evenly over the replicas.
    empty_batches_possible = False

    def __init__(self, temporal_weight=1e-3, activation_weight=0.0):
        for name, value in (("temporal_weight", temporal_weight),
                            ("activation_weight", activation_weight)):
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
        self.temporal_weight, self.activation_weight = temporal_weight, activation_weight

    @property
    def eval_names(self):
        return ("loss",)

    def unpack(self, batch):
        return batch, batch["targets"]

    @staticmethod
    def _token_losses(targets, outputs):
        logits = tf.cast(outputs["logits"], tf.float32)
        return tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(targets, tf.int32), logits=logits)             # [rows, T]

    def per_example_loss(self, targets, outputs):
        loss = tf.reduce_mean(self._token_losses(targets, outputs), axis=1)
        if self.temporal_weight:
            loss += self.temporal_weight * tf.cast(outputs["temporal"], tf.float32)
        if self.activation_weight:
            loss += self.activation_weight * tf.cast(outputs["activation"], tf.float32)
        return loss

    def train_sums(self, targets, outputs, per_example_loss):
        del per_example_loss   # reported without the regularisers
        return {"loss": tf.reduce_sum(self._token_losses(targets, outputs))}

    def eval_sums(self, targets, outputs):
        return {"loss": tf.reduce_sum(self._token_losses(targets, outputs))}

    def eval_metrics(self, sums, count):
        loss = sums["loss"] / count
        return {"loss": loss, "perplexity": perplexity(loss)}

    def count(self, targets):
        return tf.size(targets)
