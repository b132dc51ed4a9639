"""Deterministic index splits and subsets.

Every function is a pure function of its arguments: the same inputs (including
``seed``) always give the same outputs, independent of any global random state.
Returned index arrays are ``int64`` and sorted ascending.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["train_validation_split", "take_subset", "split_in_halves", "size_note",
           "train_size_note", "eval_size_note"]


def size_note(name: str, size, available: int, images: str):
    """The line telling that the setting `name` (``train_size``,
    ``eval_size``) asks for `size` images, more than the `available`
    `images` (e.g. "training images of digits"), so all of them are used;
    None when it does not.  The input builders print it, so a cap is never
    silent (`available` None: the count is unknown, no note)."""
    if size is None or available is None or isinstance(size, bool) \
            or not isinstance(size, numbers.Integral) or size <= available:
        return None
    return f"{name}={int(size)} is more than the {available} {images}: all {available} are used."


def train_size_note(train_size, available: int, what: str):
    """size_note for ``train_size`` and the training images of `what`."""
    return size_note("train_size", train_size, available, f"training images of {what}")


def eval_size_note(eval_size, available: int, what: str):
    """size_note for ``eval_size`` and the validation images of `what`."""
    return size_note("eval_size", eval_size, available, f"validation images of {what}")


def _check_count(num_examples, minimum: int, what: str) -> int:
    if isinstance(num_examples, bool) or not isinstance(num_examples, numbers.Integral):
        raise ValueError(f"{what} must be an integer, got {num_examples!r}")
    num_examples = int(num_examples)
    if num_examples < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {num_examples}")
    return num_examples


def _rng(seed, tag: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    # The tag decorrelates the different helpers that receive the same seed.
    return np.random.default_rng([int(seed), tag])


def train_validation_split(num_examples: int, validation_fraction: float,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(num_examples)`` into disjoint train and validation indices.

    The validation side gets ``round(num_examples * validation_fraction)``
    examples, clamped so that each side has at least one example.

    Args:
      num_examples: total number of examples (>= 2).
      validation_fraction: fraction in the open interval (0, 1).
      seed: non-negative integer; the split is a pure function of it.

    Returns:
      ``(train_indices, validation_indices)``, sorted ``int64`` arrays whose
      union is ``range(num_examples)``.

    Raises:
      ValueError: on a fraction outside (0, 1), fewer than 2 examples, or a
        bad seed.
    """
    num_examples = _check_count(num_examples, 2, "num_examples")
    try:
        fraction = float(validation_fraction)
    except (TypeError, ValueError):
        raise ValueError(
            f"validation_fraction must be a number in (0, 1), got "
            f"{validation_fraction!r}") from None
    if not (0.0 < fraction < 1.0) or math.isnan(fraction):
        raise ValueError(
            f"validation_fraction must be in the open interval (0, 1), got "
            f"{validation_fraction!r}")
    n_val = int(round(num_examples * fraction))
    n_val = min(max(n_val, 1), num_examples - 1)
    perm = _rng(seed, 1).permutation(num_examples)
    return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)


def _balanced_allocation(counts: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """How many examples to draw per class so the subset is as balanced as possible."""
    alloc = np.zeros_like(counts)
    remaining = size
    active = np.flatnonzero(counts > 0)
    while remaining > 0 and active.size:
        share = remaining // active.size
        if share == 0:
            # Fewer leftover slots than open classes: give one each to a
            # random (seeded) choice of classes.
            chosen = rng.choice(active, size=remaining, replace=False)
            alloc[chosen] += 1
            break
        give = np.minimum(share, counts[active] - alloc[active])
        alloc[active] += give
        remaining -= int(give.sum())
        active = active[alloc[active] < counts[active]]
    return alloc


def take_subset(images, labels, size: int | None, seed: int):
    """Deterministic, class-balanced random subset of ``(images, labels)``.

    If ``size`` is None or at least the number of examples, the inputs are
    returned unchanged.  Otherwise every class present gets ``size // K``
    examples (classes with too few examples give up their share to the
    others) and the leftover slots go to a seeded random choice of classes.
    Selected examples keep their original relative order.

    Args:
      images: array ``[N, ...]``.
      labels: integer array ``[N]``.
      size: desired subset size, or None.
      seed: non-negative integer.

    Returns:
      ``(images_subset, labels_subset)``.

    Raises:
      ValueError: ``size <= 0``, ``size`` smaller than the number of classes
        present, or mismatched lengths.
    """
    labels_arr = np.asarray(labels)
    n = len(labels_arr)
    if len(images) != n:
        raise ValueError(f"images ({len(images)}) and labels ({n}) differ in length")
    if size is None:
        return images, labels
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise ValueError(f"size must be an integer or None, got {size!r}")
    size = int(size)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if size >= n:
        return images, labels
    classes, inverse = np.unique(labels_arr.reshape(-1), return_inverse=True)
    if size < len(classes):
        raise ValueError(
            f"size={size} is smaller than the number of classes ({len(classes)}); "
            f"a class-balanced subset needs at least one example per class")
    rng = _rng(seed, 2)
    counts = np.bincount(inverse, minlength=len(classes))
    alloc = _balanced_allocation(counts, size, rng)
    chosen = []
    for k in range(len(classes)):
        members = np.flatnonzero(inverse == k)
        if alloc[k]:
            chosen.append(rng.permutation(members)[: alloc[k]])
    idx = np.sort(np.concatenate(chosen)).astype(np.int64)
    return images[idx], labels_arr[idx]


def split_in_halves(num_examples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(num_examples)`` into two disjoint random halves.

    Used for first-order DARTS-style alternating updates (weights on one half,
    architecture parameters on the other).  With an odd count the second half
    is one larger.

    Returns:
      ``(idx_a, idx_b)``, sorted ``int64`` arrays whose union is
      ``range(num_examples)``.

    Raises:
      ValueError: fewer than 2 examples or a bad seed.
    """
    num_examples = _check_count(num_examples, 2, "num_examples")
    perm = _rng(seed, 3).permutation(num_examples)
    half = num_examples // 2
    return np.sort(perm[:half]).astype(np.int64), np.sort(perm[half:]).astype(np.int64)
