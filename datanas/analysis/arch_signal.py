"""What the architecture gradient says: its size, its signal-to-noise ratio
over sampled children and batches, and its direction against the dense
(DARTS) gradient at the same network weights.

A search moves its logits by Adam steps whose direction is the gradient's
sign pattern.  If one step's gradient is mostly noise (the child sampled,
the batch drawn), the logits random-walk: their entropy barely drops and
two seeds learn unrelated distributions.  The figures here tell how many
steps a search needs before the drift outgrows the walk:

* ``signal_norm``: an unbiased estimate of ``|E g|`` (the mean over
  batches and draws, less the noise it still holds);
* ``noise_norm``: ``sqrt(E |g - E g|^2)``, one step's noise;
* ``snr = signal_norm / noise_norm``; after T steps the summed drift is
  ``T * signal`` and the summed noise ``sqrt(T) * noise``, so the drift
  dominates after about ``1 / snr^2`` steps (``steps_to_signal``);
* ``sampling_share``: the part of the noise variance that comes from the
  sampled child rather than the batch (the within-batch variance component
  over the sum of the within- and between-batch components: in [0, 1]);
* ``cosine_to_dense``: the cosine between the mean gradient and the mean
  softmax-mixing (DARTS first-order) gradient at the same weights.

Written for the conv space's supernet (``spaces.darts_cnn``), run eagerly:
edges compute only the ops with a non-zero weight, through shared compiled
layer functions (``engine.layer_functions``).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from datanas.core.layer_functions import LayerFunctions
from datanas.estimators import EnsembleGumbelSoftmax
from datanas.spaces.darts_cnn.genotype import CELL_KINDS
from datanas.spaces.darts_cnn.supernet import node_sampling_seed

__all__ = ["Estimator", "gradient_statistics", "sampled_weights", "dense_weights",
           "architecture_gradients", "signal_report", "measure_during_warmup"]


@dataclasses.dataclass(frozen=True)
class Estimator:
    """One way of turning logits into edge weights for a gradient.

    name: a label; kind: "egs" (M samples, straight-through) or "softmax"
    (DARTS' mixing, edge scope); num_samples / temperature / scope: EGS'
    M, temperature and distribution scope ("node" or "edge")."""
    name: str
    kind: str = "egs"
    num_samples: int = 4
    temperature: float = 1.0
    scope: str = "node"

    def __post_init__(self):
        if self.kind not in ("egs", "softmax"):
            raise ValueError(f"estimator kind must be 'egs' or 'softmax', got {self.kind!r}.")
        if self.scope not in ("node", "edge"):
            raise ValueError(f"scope must be 'node' or 'edge', got {self.scope!r}.")


def sampled_weights(model, layer, scope, seed):
    """Per-kind, per-node EGS codes of `model`'s logits drawn by `layer` (an
    EnsembleGumbelSoftmax) in `scope`, a pure function of the [2] `seed`."""
    weights = {}
    for kind_index, kind in enumerate(CELL_KINDS):
        per_node = []
        for node, logits in enumerate(model.arch_logits[kind]):
            values = tf.reshape(logits, [-1]) if scope == "node" else logits
            node_seed = node_sampling_seed(seed, kind_index, node)
            per_node.append(tf.reshape(layer.sample(values, seed=node_seed), tf.shape(logits)))
        weights[kind] = per_node
    return weights


def dense_weights(model):
    """DARTS' edge weights: softmax over each edge's ops."""
    return {kind: [tf.nn.softmax(logits, axis=-1) for logits in model.arch_logits[kind]]
            for kind in CELL_KINDS}


def architecture_gradients(model, task, batches, estimator, draws, seed=0, functions=None):
    """Gradients of the mean training loss w.r.t. every architecture logit,
    one per (batch, draw): an array ``[len(batches), draws, P]``.

    The softmax estimator is deterministic, so it takes one draw per batch
    (``[len(batches), 1, P]``).  Forward passes run in training mode (batch
    statistics), as in a search step; moving statistics are left as found.
    """
    variables = model.architecture_variables
    statistics = [v for v in model.non_trainable_variables]
    saved = [v.numpy() for v in statistics]
    layer = None
    if estimator.kind == "egs":
        layer = EnsembleGumbelSoftmax(num_samples=estimator.num_samples,
                                      temperature=estimator.temperature)
    functions = LayerFunctions() if functions is None else functions
    result = []
    for batch_index, (inputs, targets) in enumerate(batches):
        per_batch = []
        for draw in range(draws if layer is not None else 1):
            draw_seed = tf.constant([seed, batch_index * 100003 + draw], tf.int64)
            with functions.active(), tf.GradientTape() as tape:
                weights = (dense_weights(model) if layer is None
                           else sampled_weights(model, layer, estimator.scope, draw_seed))
                outputs = model.forward(inputs, weights, training=True)
                loss = tf.reduce_mean(task.per_example_loss(targets, outputs))
            grads = tape.gradient(loss, variables)
            per_batch.append(np.concatenate([
                np.zeros(int(np.prod(v.shape)), np.float64) if g is None
                else np.asarray(g, np.float64).ravel() for g, v in zip(grads, variables)]))
        result.append(per_batch)
    for variable, value in zip(statistics, saved):
        variable.assign(value)
    return np.asarray(result)


def gradient_statistics(grads):
    """Signal and noise of gradients ``[batches, draws, P]`` (see module doc)."""
    grads = np.asarray(grads, np.float64)
    batches, draws, _ = grads.shape
    flat = grads.reshape(batches * draws, -1)
    count = flat.shape[0]
    mean = flat.mean(axis=0)
    total_var = float(((flat - mean) ** 2).sum(axis=1).mean()) * count / max(count - 1, 1)
    # |mean|^2 over-estimates |E g|^2 by the variance of the mean.
    signal_sq = max(float(mean @ mean) - total_var / count, 0.0)
    # Variance components: within a batch (the sampled child) and between
    # batches (the batch's own mean, less the draw noise its mean still holds,
    # floored at 0), so the share is a fraction in [0, 1].
    within = between = 0.0
    if draws > 1:
        batch_means = grads.mean(axis=1, keepdims=True)
        within = float(((grads - batch_means) ** 2).sum(axis=2).mean()) * draws / (draws - 1)
        if batches > 1:
            spread = float(((batch_means - batch_means.mean(axis=0)) ** 2).sum(axis=2).mean())
            between = max(spread * batches / (batches - 1) - within / draws, 0.0)
    signal, noise = np.sqrt(signal_sq), np.sqrt(total_var)
    snr = signal / noise if noise > 0 else float("inf")
    return {"gradient_norm": float(np.linalg.norm(flat, axis=1).mean()),
            "signal_norm": float(signal), "noise_norm": float(noise), "snr": float(snr),
            "steps_to_signal": float(1.0 / snr ** 2) if snr > 0 else float("inf"),
            "sampling_share": float(within / (within + between)) if within > 0 else 0.0,
            "samples": int(count)}, mean


def _cosine(a, b):
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else 0.0


def signal_report(model, task, batches, estimators, draws, seed=0, functions=None):
    """Rows of `gradient_statistics` for each Estimator on the same batches
    and weights, each with ``cosine_to_dense`` (the softmax estimator's mean
    gradient is the reference; it is computed once if not listed)."""
    rows, means = [], {}
    functions = LayerFunctions() if functions is None else functions
    dense = next((e for e in estimators if e.kind == "softmax"), None)
    reference = None
    if dense is None:
        _, reference = gradient_statistics(
            architecture_gradients(model, task, batches, Estimator("dense", "softmax"), 1, seed,
                                   functions))
    for estimator in estimators:
        stats, mean = gradient_statistics(
            architecture_gradients(model, task, batches, estimator, draws, seed, functions))
        means[estimator.name] = mean
        if estimator is dense:
            reference = mean
        rows.append({"estimator": estimator.name, **dataclasses.asdict(estimator), **stats})
    for row in rows:
        row["cosine_to_dense"] = _cosine(means[row["estimator"]], reference)
    return rows


def _supernet_loss(searcher, task, batches):
    """Mean loss of the measurement batches, children sampled with a fixed
    seed per batch, batch norm in inference mode."""
    losses = []
    with searcher.layer_functions.active():
        for index, (inputs, targets) in enumerate(batches):
            weights = searcher.sample_eval_weights(tf.constant(index, tf.int64))
            outputs = searcher.model.forward(inputs, weights, training=False)
            losses.append(float(tf.reduce_mean(task.per_example_loss(targets, outputs))))
    return float(np.mean(losses))


def measure_during_warmup(searcher, task, train_epoch, batches, estimators, warmup_steps, draws,
                          seed=0, log=print):
    """`signal_report` rows at each of the increasing `warmup_steps`: the
    searcher's weight steps (a host-driven Searcher: children sampled from
    its logits, which stay untouched) run on `train_epoch(epoch)` batches in
    between.  Each row gets ``warmup_steps`` and ``train_loss`` (the
    supernet's loss on `batches`)."""
    rows, done, epoch = [], 0, 0
    for target in warmup_steps:
        while done < target:
            for batch in train_epoch(epoch):
                if done >= target:
                    break
                metrics = searcher.weight_step(batch)
                done += 1
                if done % 50 == 0:
                    log(f"warm-up step {done}/{target}: loss {float(metrics['loss']):.3f}")
            epoch += 1
        loss = _supernet_loss(searcher, task, batches)
        report = signal_report(searcher.model, task, batches, estimators, draws, seed=seed,
                               functions=searcher.layer_functions)
        for row in report:
            row.update(warmup_steps=target, train_loss=loss)
            log(f"[{target} steps] {row['estimator']:>10}: SNR {row['snr']:.3f} (steps to "
                f"signal {row['steps_to_signal']:.0f}), |g| {row['gradient_norm']:.2e}, cos to "
                f"DARTS {row['cosine_to_dense']:+.2f}, sampling share "
                f"{row['sampling_share']:.2f}")
        rows.extend(report)
    return rows
