"""Language-model inputs: contiguous token streams cut into truncated-BPTT windows.

A token stream is laid out as AWD-LSTM / DARTS do it, but row-major:
:func:`batchify` reshapes it into ``rows`` contiguous streams (row ``r`` is
``ids[r*n:(r+1)*n]``), and every step reads the same window of time steps
``[start, start + T)`` of all rows, with targets one token ahead.  Window
``k + 1`` starts where window ``k`` ended, so a recurrent model carries its
hidden state from step to step and resets it when ``reset`` is set (the first
window of an epoch or evaluation pass).

Fixed steps per epoch with variable BPTT
----------------------------------------
DARTS (``rnn/train.py``) draws every training window's length: the base is
``bptt`` with probability 0.95, else ``bptt / 2``; the length is
``max(5, int(normal(base, 5)))``, capped at ``bptt + 20``; the pass ends when
the row is covered, so the number of steps varies from epoch to epoch.  The
run loop here needs the same, known number of steps in every epoch (for
resuming, checkpoint steps and the learning-rate schedule), so:

* An epoch of a variable-length stream has exactly
  ``N = round((length - 1) / mu)`` windows, ``mu`` being the exact expected
  window length of the DARTS distribution (:func:`window_length_moments`;
  33.6 at the defaults, standard deviation 6.3), i.e. about the expected
  number of windows of a DARTS pass over the row.
* Window lengths are drawn as DARTS does (seeded by ``(seed, epoch)``) until
  the row is covered.  If that takes more than ``N`` windows the epoch stops
  after ``N`` full draws and the rest of the row is not read in that epoch;
  if it takes fewer, the longest windows are split in halves (earliest first)
  until there are ``N``.  Each happens in about half of the epochs and
  concerns ``~0.4 * 6.3 * sqrt(N)`` tokens of a row.  Measured over 1000
  epochs on Penn Treebank's 929k training tokens: in 64 rows (``N`` = 432)
  0.4% of an epoch's tokens are left unread on average (0.7% in the epochs
  that leave any) and 1.3 windows are split; in 256 rows (``N`` = 108) 0.7%
  (1.5%) and 0.6 windows.  All other windows keep the DARTS length
  distribution, and the unread tail changes from epoch to epoch, so no
  position is systematically skipped.
* Fixed-length streams (evaluation, ``variable=False``) have
  ``ceil((length - 1) / bptt)`` windows of ``bptt`` steps, the last shorter,
  covering the whole row.

Windows are a pure function of ``(seed, epoch)``, so skipping the elements
of finished steps resumes an epoch exactly.

Distribution
------------
Elements are *per-replica* batches: the ``rows`` are split into
``num_replicas_in_sync`` contiguous blocks and input pipeline ``p`` yields,
for each window, the batches of its replicas ``p*k .. p*k + k - 1``
(``k = replicas / pipelines``) one after the other.  ``tf.distribute``'s
``distribute_datasets_from_function`` hands consecutive elements of a
pipeline to its replicas in order, so replica ``g`` always reads rows
``[g * rows / replicas, (g + 1) * rows / replicas)`` and carries the hidden
state of exactly those rows.

Search inputs never read the test split, nor the corpus's validation split:
the validation stream that selects architectures is the last
``validation_fraction`` of the training tokens (DARTS searched on PTB's
validation split; we deliberately keep both held-out splits for the final
evaluation).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import numbers

import numpy as np

__all__ = [
    "STREAM_TRAIN",
    "STREAM_ARCH",
    "STREAM_EVAL",
    "batchify",
    "bptt_windows",
    "window_length_moments",
    "epoch_window_count",
    "LMStream",
    "LMSearchInputs",
    "LMTrainInputs",
    "make_lm_search_inputs",
    "make_lm_train_inputs",
]

# Stream ids; the model uses them to pick the hidden state it carries.
STREAM_TRAIN = 0
STREAM_ARCH = 1
STREAM_EVAL = 2
_STREAMS = (STREAM_TRAIN, STREAM_ARCH, STREAM_EVAL)

# ``seed`` field of a batch: [seed, epoch * _EPOCH_STRIDE + window_index].
_EPOCH_STRIDE = 1_000_000
# Decorrelates window lengths from other users of the same (seed, epoch).
_WINDOW_TAG = 0x4C4D   # "LM"


def _check_int(value, minimum: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def _check_float(value, minimum: float, maximum: float, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if math.isnan(value) or not minimum <= value <= maximum:
        raise ValueError(f"{what} must be in [{minimum}, {maximum}], got {value!r}")
    return value


# --------------------------------------------------------------------------
# Streams and windows (numpy)
# --------------------------------------------------------------------------


def batchify(ids, rows: int) -> np.ndarray:
    """``int32 [rows, n]`` with row ``r`` = ``ids[r*n:(r+1)*n]``, ``n = len(ids) // rows``.

    The remainder is dropped (as AWD-LSTM's ``batchify``), but rows are
    contiguous pieces of the stream (row-major), not columns.

    Raises:
      ValueError: ``ids`` not 1-D, or fewer than 2 tokens per row.
    """
    rows = _check_int(rows, 1, "rows")
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be a 1-D token stream, got shape {ids.shape}")
    n = ids.shape[0] // rows
    if n < 2:
        raise ValueError(f"{ids.shape[0]} tokens give {n} per row for {rows} rows; each row "
                         "needs at least 2 (an input and its target)")
    return np.ascontiguousarray(ids[:rows * n].reshape(rows, n), dtype=np.int32)


def _check_window_settings(bptt, min_len, max_delta, half_prob, jitter_std):
    return (_check_int(bptt, 1, "bptt"), _check_int(min_len, 1, "min_len"),
            _check_int(max_delta, 0, "max_delta"),
            _check_float(half_prob, 0.0, 1.0, "half_prob"),
            _check_float(jitter_std, 0.0, math.inf, "jitter_std"))


def window_length_moments(bptt: int, *, min_len: int = 5, max_delta: int = 20,
                          half_prob: float = 0.05, jitter_std: float = 5.0):
    """Exact mean and standard deviation of a variable window's length.

    The length is ``min(bptt + max_delta, max(min_len, int(x)))`` with ``x``
    normal with mean ``bptt`` (probability ``1 - half_prob``) or ``bptt / 2``
    and standard deviation ``jitter_std`` (the row end is not considered).
    """
    bptt, min_len, max_delta, half_prob, jitter_std = _check_window_settings(
        bptt, min_len, max_delta, half_prob, jitter_std)
    cap = bptt + max_delta
    values = np.arange(min(min_len, cap), cap + 1, dtype=np.float64)
    probs = np.zeros_like(values)
    for base, weight in ((bptt, 1.0 - half_prob), (bptt / 2.0, half_prob)):
        if weight == 0.0:
            continue
        if cap <= min_len:
            probs[-1] += weight
            continue
        if jitter_std == 0.0:
            probs[int(min(cap, max(min_len, int(base)))) - int(values[0])] += weight
            continue

        def cdf(x, base=base):
            return 0.5 * (1.0 + math.erf((x - base) / (jitter_std * math.sqrt(2.0))))

        pmf = [cdf(min_len + 1)]                                    # int(x) <= min_len
        pmf += [cdf(k + 1) - cdf(k) for k in range(min_len + 1, cap)]
        pmf.append(1.0 - cdf(cap))                                  # int(x) >= cap
        probs += weight * np.asarray(pmf)
    mean = float((probs * values).sum())
    std = float(math.sqrt(max((probs * (values - mean) ** 2).sum(), 0.0)))
    return mean, std


def epoch_window_count(length: int, bptt: int, *, variable: bool = True, min_len: int = 5,
                       max_delta: int = 20, half_prob: float = 0.05,
                       jitter_std: float = 5.0) -> int:
    """Windows of every epoch of a row of ``length`` tokens (see module docstring).

    ``ceil((length - 1) / bptt)`` for fixed windows, else
    ``round((length - 1) / mu)`` (at least 1) with ``mu`` the expected window
    length.
    """
    length = _check_int(length, 2, "length")
    bptt = _check_int(bptt, 1, "bptt")
    if not variable:
        return -(-(length - 1) // bptt)
    mean, _ = window_length_moments(bptt, min_len=min_len, max_delta=max_delta,
                                    half_prob=half_prob, jitter_std=jitter_std)
    return int(min(max(1, round((length - 1) / mean)), length - 1))


def _split_longest(lengths: list, count: int) -> list:
    """Split the longest window (earliest on ties) in halves until there are ``count``."""
    # A piece is (-length, window, path): path is the tuple of halves taken
    # (0 = first, 1 = second), so (window, path) orders pieces along the row.
    heap = [(-n, i, ()) for i, n in enumerate(lengths)]
    heapq.heapify(heap)
    while len(heap) < count:
        neg, window, path = heapq.heappop(heap)
        if -neg < 2:
            raise ValueError(f"cannot cut {sum(lengths)} positions into {count} windows")
        heapq.heappush(heap, (-((1 - neg) // 2), window, path + (0,)))
        heapq.heappush(heap, (-((-neg) // 2), window, path + (1,)))
    return [-neg for neg, _, _ in sorted(heap, key=lambda piece: piece[1:])]


def bptt_windows(length: int, bptt: int, *, seed: int, epoch: int, variable: bool = True,
                 min_len: int = 5, max_delta: int = 20, half_prob: float = 0.05,
                 jitter_std: float = 5.0, num_windows: int | None = None) -> list:
    """Consecutive ``(start, seq_len)`` windows over a row of ``length`` tokens.

    Windows start at 0, each begins where the previous one ended and
    ``start + seq_len <= length - 1`` (the targets are the next tokens); the
    last window is shortened to fit.  With ``variable=False`` every window is
    ``bptt`` long.  With ``variable=True`` lengths follow DARTS
    ``rnn/train.py``: the base is ``bptt`` with probability ``1 - half_prob``
    else ``bptt / 2``, and ``seq_len = max(min_len, int(normal(base,
    jitter_std)))``, capped at ``bptt + max_delta``.  Lengths come from
    ``numpy.random.default_rng([seed, epoch, tag])``: the windows are a pure
    function of the arguments.

    Without ``num_windows`` the windows cover positions ``0 .. length - 2``
    exactly once.  With it there are exactly ``num_windows`` windows: the
    first ``num_windows`` if the row needs more (the rest of the row is left
    out), else the covering ones with the longest split in halves until there
    are enough (see the module docstring).

    Returns:
      A list of ``(start, seq_len)`` tuples of Python ints.
    """
    length = _check_int(length, 2, "length")
    bptt, min_len, max_delta, half_prob, jitter_std = _check_window_settings(
        bptt, min_len, max_delta, half_prob, jitter_std)
    seed = _check_int(seed, 0, "seed")
    epoch = _check_int(epoch, 0, "epoch")
    positions = length - 1
    if not variable:
        lengths = np.full(-(-positions // bptt), bptt, dtype=np.int64)
    else:
        cap = bptt + max_delta
        most = positions // min(min_len, cap) + 1   # no window but the last is shorter
        rng = np.random.default_rng([seed, epoch, _WINDOW_TAG])
        uniform = rng.random(most)
        normal = rng.standard_normal(most)
        base = np.where(uniform < 1.0 - half_prob, float(bptt), bptt / 2.0)
        lengths = np.maximum(min_len, (base + jitter_std * normal).astype(np.int64))
        lengths = np.minimum(lengths, cap)
        ends = np.cumsum(lengths)
        count = int(np.searchsorted(ends, positions)) + 1   # first window reaching the end
        lengths = lengths[:count]
    lengths[-1] -= max(int(lengths.sum()) - positions, 0)   # the last window fits the row
    lengths = [int(n) for n in lengths]
    if num_windows is not None:
        num_windows = _check_int(num_windows, 1, "num_windows")
        if num_windows > positions:
            raise ValueError(f"num_windows={num_windows} exceeds the {positions} positions "
                             f"of a row of {length} tokens")
        if len(lengths) > num_windows:
            lengths = lengths[:num_windows]
        elif len(lengths) < num_windows:
            lengths = _split_longest(lengths, num_windows)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return [(int(s), int(n)) for s, n in zip(starts, lengths)]


# --------------------------------------------------------------------------
# tf.data streams
# --------------------------------------------------------------------------


def _context_layout(input_context):
    """``(num_input_pipelines, input_pipeline_id, num_replicas_in_sync)``."""
    if input_context is None:
        return 1, 0, 1
    pipelines = int(input_context.num_input_pipelines)
    pipeline_id = int(input_context.input_pipeline_id)
    replicas = int(input_context.num_replicas_in_sync)
    if pipelines < 1 or replicas < 1 or not 0 <= pipeline_id < pipelines:
        raise ValueError(f"invalid input context: pipeline {pipeline_id} of {pipelines}, "
                         f"{replicas} replicas")
    if replicas % pipelines:
        raise ValueError(f"{replicas} replicas cannot be shared evenly by {pipelines} input "
                         "pipelines (one per worker); use the same number of devices per worker")
    return pipelines, pipeline_id, replicas


@dataclasses.dataclass(eq=False)
class LMStream:
    """A batchified token stream and how to cut it into windows.

    Attributes:
      tokens: ``int32 [rows, length]`` from :func:`batchify`.
      bptt: window length (the base length when ``variable``).
      variable: DARTS-style random window lengths (training) or fixed
        ``bptt`` windows (evaluation).
      seed: seeds the window lengths and the batches' ``seed`` field.
      min_len, max_delta, half_prob, jitter_std: see :func:`bptt_windows`.
      flag: the command-line flag that sets ``rows``, named in errors.
    """

    tokens: np.ndarray = dataclasses.field(repr=False)
    bptt: int
    variable: bool = False
    seed: int = 0
    min_len: int = 5
    max_delta: int = 20
    half_prob: float = 0.05
    jitter_std: float = 5.0
    flag: str = "--batch_size"

    def __post_init__(self):
        tokens = np.asarray(self.tokens)
        if tokens.ndim != 2 or tokens.shape[1] < 2 \
                or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens must be an integer [rows, length >= 2] matrix, got "
                             f"{tokens.dtype} {tokens.shape}")
        self.tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        self.seed = _check_int(self.seed, 0, "seed")
        self.variable = bool(self.variable)
        (self.bptt, self.min_len, self.max_delta, self.half_prob,
         self.jitter_std) = _check_window_settings(self.bptt, self.min_len, self.max_delta,
                                                   self.half_prob, self.jitter_std)
        self._steps = epoch_window_count(self.length, self.bptt, variable=self.variable,
                                         **self._window_settings())
        if self._steps >= _EPOCH_STRIDE:
            raise ValueError(f"{self._steps} windows per epoch do not fit the batch seed "
                             f"layout (< {_EPOCH_STRIDE}); raise bptt or {self.flag}")

    def _window_settings(self):
        return {"min_len": self.min_len, "max_delta": self.max_delta,
                "half_prob": self.half_prob, "jitter_std": self.jitter_std}

    @property
    def rows(self) -> int:
        """Global number of rows (the global batch size)."""
        return int(self.tokens.shape[0])

    @property
    def length(self) -> int:
        """Tokens per row."""
        return int(self.tokens.shape[1])

    @property
    def steps_per_epoch(self) -> int:
        """Windows (steps) of every epoch; the same for all epochs."""
        return self._steps

    def windows(self, epoch: int = 0) -> list:
        """The ``(start, seq_len)`` windows of ``epoch`` (``steps_per_epoch`` of them)."""
        return bptt_windows(self.length, self.bptt, seed=self.seed, epoch=epoch,
                            variable=self.variable, num_windows=self._steps,
                            **self._window_settings())

    def replica_rows(self, num_replicas: int) -> int:
        """Rows of one replica's batch; ValueError naming ``flag`` if not even."""
        num_replicas = _check_int(num_replicas, 1, "num_replicas")
        if self.rows % num_replicas:
            raise ValueError(f"{self.flag}={self.rows} is not divisible by the {num_replicas} "
                             f"replicas; set {self.flag} to a multiple of {num_replicas}")
        return self.rows // num_replicas

    def dataset(self, epoch: int = 0, input_context=None, stream: int = STREAM_TRAIN,
                skip_windows: int = 0):
        """Per-replica batches of ``epoch`` for one input pipeline.

        Each element is a dict: ``tokens`` and ``targets`` ``int32
        [rows_per_replica, T]`` (targets are the next tokens), ``reset``
        (bool, True on window 0 only), ``stream`` (int32), ``seed`` (int64
        ``[seed, epoch * 1_000_000 + window]``, equal on all replicas of a
        step) and ``length`` (int32 ``T``).  With ``input_context`` the
        pipeline yields, per window, the batches of its ``k`` replicas in
        order; ``.skip(s * k)`` (or ``skip_windows=s``) starts at window ``s``.
        """
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        epoch = _check_int(epoch, 0, "epoch")
        skip_windows = _check_int(skip_windows, 0, "skip_windows")
        if stream not in _STREAMS:
            raise ValueError(f"stream must be one of {_STREAMS} (STREAM_TRAIN, STREAM_ARCH, "
                             f"STREAM_EVAL), got {stream!r}")
        pipelines, pipeline_id, replicas = _context_layout(input_context)
        rows = self.replica_rows(replicas)
        per_pipeline = replicas // pipelines
        windows = np.asarray(self.windows(epoch), dtype=np.int32).reshape(-1, 2)
        index = np.arange(windows.shape[0], dtype=np.int64)[skip_windows:]
        windows = windows[skip_windows:]
        first_rows = (pipeline_id * per_pipeline + np.arange(per_pipeline)) * rows
        # Element order: window-major, then this pipeline's replicas.
        columns = (np.repeat(index, per_pipeline),
                   np.repeat(windows[:, 0], per_pipeline),
                   np.repeat(windows[:, 1], per_pipeline),
                   np.tile(first_rows, index.shape[0]).astype(np.int32))

        matrix = tf.constant(self.tokens)
        seed = tf.constant(self.seed, tf.int64)
        epoch_base = tf.constant(epoch * _EPOCH_STRIDE, tf.int64)
        stream_t = tf.constant(stream, tf.int32)

        def element(window, start, length, first_row):
            block = tf.slice(matrix, tf.stack([first_row, start]), tf.stack([rows, length + 1]))
            return {"tokens": tf.ensure_shape(block[:, :-1], [rows, None]),
                    "targets": tf.ensure_shape(block[:, 1:], [rows, None]),
                    "reset": tf.equal(window, 0),
                    "stream": stream_t,
                    "seed": tf.stack([seed, epoch_base + window]),
                    "length": length}

        ds = tf.data.Dataset.from_tensor_slices(columns)
        ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)


def _make_stream(ids, rows, *, bptt, variable, seed, flag, what, hint):
    try:
        tokens = batchify(ids, rows)
    except ValueError:
        raise ValueError(f"the {what} stream has {len(ids)} tokens, fewer than 2 per row for "
                         f"{flag}={rows}; {hint}") from None
    return LMStream(tokens, bptt=bptt, variable=variable, seed=seed, flag=flag)


def _check_tokens_limit(train_tokens, available):
    if train_tokens is None:
        return available
    train_tokens = _check_int(train_tokens, 1, "train_tokens")
    return min(train_tokens, available)


def _check_divisible(value, flag, num_replicas, note=""):
    if value % num_replicas:
        raise ValueError(f"{flag}={value} is not divisible by the {num_replicas} replicas; set "
                         f"{flag} to a multiple of {num_replicas}{note}")


# --------------------------------------------------------------------------
# Search inputs
# --------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class LMSearchInputs:
    """Streams of a recurrent-cell search: weights, architecture, validation.

    Same protocol as ``data_tf.search_inputs.SearchInputs``.  All streams come
    from the corpus's training split; ``validation`` is its last part.
    """

    train_stream: LMStream
    arch_stream: LMStream | None
    valid_stream: LMStream
    batch_size: int
    eval_batch_size: int
    vocab_size: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        """Weight-update steps per epoch."""
        return self.distributed_steps_per_epoch(1, 1)

    @property
    def validation_steps(self) -> int:
        """Steps of one pass over the validation stream."""
        return self.valid_stream.steps_per_epoch

    def distributed_steps_per_epoch(self, num_input_pipelines, num_replicas):
        """Steps of every epoch under ``num_replicas`` replicas fed by the pipelines.

        Every pipeline reads every window (its replicas' rows), so the count
        does not depend on the distribution; it only has to be valid.
        """
        num_input_pipelines = _check_int(num_input_pipelines, 1, "num_input_pipelines")
        num_replicas = _check_int(num_replicas, 1, "num_replicas")
        _check_divisible(self.batch_size, "--batch_size", num_replicas)
        _check_divisible(self.eval_batch_size, "--eval_batch_size", num_replicas)
        steps = [self.train_stream.steps_per_epoch]
        if self.arch_stream is not None:
            steps.append(self.arch_stream.steps_per_epoch)
        return min(steps)

    def train(self, epoch, input_context=None):
        return self.train_stream.dataset(epoch, input_context, STREAM_TRAIN)

    def arch(self, epoch, input_context=None):
        if self.arch_stream is None:
            return None
        return self.arch_stream.dataset(epoch, input_context, STREAM_ARCH)

    def validation(self, input_context=None):
        return self.valid_stream.dataset(0, input_context, STREAM_EVAL)

    def sizes(self):
        """Tokens read by each stream (after dropping batchify remainders) and ``vocab``."""
        return {"train": int(self.train_stream.tokens.size),
                "arch": 0 if self.arch_stream is None else int(self.arch_stream.tokens.size),
                "validation": int(self.valid_stream.tokens.size),
                "vocab": int(self.vocab_size)}


def make_lm_search_inputs(corpus, *, batch_size, eval_batch_size=10, bptt=35,
                          variable_bptt=True, separate_arch_split=False, train_tokens=None,
                          validation_fraction=0.1, seed=0):
    """Search streams from a TextCorpus's training split only.

    Args:
      corpus: a ``data_tf.text_corpora.TextCorpus``.
      batch_size: global rows of the weight (and architecture) batches.
      eval_batch_size: rows of the validation batches.
      bptt: (base) window length.
      variable_bptt: DARTS-style random training window lengths.
      separate_arch_split: cut the training tokens left after the validation
        part into two contiguous equal halves: the first updates the weights,
        the second the architecture (they have the same windows every epoch).
      train_tokens: use only the first this many training tokens (quick
        runs); None = all.
      validation_fraction: the last fraction of those tokens, in (0, 1),
        becomes the validation stream (never the corpus's valid/test splits).
      seed: seeds window lengths and the batches' ``seed`` field.
    """
    batch_size = _check_int(batch_size, 1, "batch_size")
    eval_batch_size = _check_int(eval_batch_size, 1, "eval_batch_size")
    seed = _check_int(seed, 0, "seed")
    fraction = _check_float(validation_fraction, 0.0, 1.0, "validation_fraction")
    if fraction in (0.0, 1.0):
        raise ValueError(f"validation_fraction must be in the open interval (0, 1), got "
                         f"{validation_fraction!r}")
    ids = np.asarray(corpus.train)
    ids = ids[:_check_tokens_limit(train_tokens, ids.shape[0])]
    n_valid = min(max(int(round(ids.shape[0] * fraction)), 1), ids.shape[0] - 1)
    head, tail = ids[:ids.shape[0] - n_valid], ids[ids.shape[0] - n_valid:]
    hint = "raise --train_tokens or lower --batch_size"
    arch_stream = None
    if separate_arch_split:
        half = head.shape[0] // 2
        head, arch_ids = head[:half], head[half:2 * half]
        arch_stream = _make_stream(arch_ids, batch_size, bptt=bptt, variable=variable_bptt,
                                   seed=seed, flag="--batch_size", what="architecture",
                                   hint=hint)
    train_stream = _make_stream(head, batch_size, bptt=bptt, variable=variable_bptt, seed=seed,
                                flag="--batch_size", what="training", hint=hint)
    valid_stream = _make_stream(tail, eval_batch_size, bptt=bptt, variable=False, seed=seed,
                                flag="--eval_batch_size", what="validation",
                                hint="raise --train_tokens or lower --eval_batch_size")
    return LMSearchInputs(train_stream=train_stream, arch_stream=arch_stream,
                          valid_stream=valid_stream, batch_size=batch_size,
                          eval_batch_size=eval_batch_size, vocab_size=corpus.vocab_size,
                          seed=seed)


# --------------------------------------------------------------------------
# Evaluation-training inputs
# --------------------------------------------------------------------------


_TEST_NOTE = " (DARTS reports test perplexity with --test_batch_size=1, i.e. on one replica)"


@dataclasses.dataclass(eq=False)
class LMTrainInputs:
    """Streams of training a fixed recurrent network: train, valid, test."""

    train_stream: LMStream
    valid_stream: LMStream
    test_stream: LMStream
    batch_size: int
    eval_batch_size: int
    test_batch_size: int
    vocab_size: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return self.train_stream.steps_per_epoch

    def distributed_steps_per_epoch(self, num_input_pipelines, num_replicas):
        """Steps of every epoch; checks that every batch size splits over the replicas."""
        _check_int(num_input_pipelines, 1, "num_input_pipelines")
        num_replicas = _check_int(num_replicas, 1, "num_replicas")
        _check_divisible(self.batch_size, "--batch_size", num_replicas)
        _check_divisible(self.eval_batch_size, "--eval_batch_size", num_replicas)
        _check_divisible(self.test_batch_size, "--test_batch_size", num_replicas, _TEST_NOTE)
        return self.steps_per_epoch

    def train(self, epoch, input_context=None):
        return self.train_stream.dataset(epoch, input_context, STREAM_TRAIN)

    def validation(self, input_context=None):
        return self.valid_stream.dataset(0, input_context, STREAM_EVAL)

    def test(self, input_context=None):
        _, _, replicas = _context_layout(input_context)
        _check_divisible(self.test_batch_size, "--test_batch_size", replicas, _TEST_NOTE)
        return self.test_stream.dataset(0, input_context, STREAM_EVAL)

    def eval_sets(self):
        """``{"valid": fn, "test": fn}`` of callables ``input_context -> dataset``."""
        return {"valid": self.validation, "test": self.test}

    def sizes(self):
        return {"train": int(self.train_stream.tokens.size),
                "valid": int(self.valid_stream.tokens.size),
                "test": int(self.test_stream.tokens.size),
                "vocab": int(self.vocab_size)}


def make_lm_train_inputs(corpus, *, batch_size, eval_batch_size=10, test_batch_size=1, bptt=35,
                         variable_bptt=True, seed=0, train_tokens=None):
    """Streams for training a fixed network on the corpus's train split.

    ``valid`` (``eval_batch_size`` rows) is the corpus's validation split and
    ``test`` (``test_batch_size`` rows; DARTS uses 1) its test split, both
    read in fixed ``bptt`` windows.  ``train_tokens`` keeps only the first
    this many training tokens.
    """
    batch_size = _check_int(batch_size, 1, "batch_size")
    eval_batch_size = _check_int(eval_batch_size, 1, "eval_batch_size")
    test_batch_size = _check_int(test_batch_size, 1, "test_batch_size")
    seed = _check_int(seed, 0, "seed")
    ids = np.asarray(corpus.train)
    ids = ids[:_check_tokens_limit(train_tokens, ids.shape[0])]
    train_stream = _make_stream(ids, batch_size, bptt=bptt, variable=variable_bptt, seed=seed,
                                flag="--batch_size", what="training",
                                hint="raise --train_tokens or lower --batch_size")
    valid_stream = _make_stream(corpus.valid, eval_batch_size, bptt=bptt, variable=False,
                                seed=seed, flag="--eval_batch_size", what="validation",
                                hint="lower --eval_batch_size")
    test_stream = _make_stream(corpus.test, test_batch_size, bptt=bptt, variable=False,
                               seed=seed, flag="--test_batch_size", what="test",
                               hint="lower --test_batch_size")
    return LMTrainInputs(train_stream=train_stream, valid_stream=valid_stream,
                         test_stream=test_stream, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, test_batch_size=test_batch_size,
                         vocab_size=corpus.vocab_size, seed=seed)
