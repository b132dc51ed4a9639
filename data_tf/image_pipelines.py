"""Deterministic ``tf.data`` input pipelines for image classification.

Reproducibility contract: for a given ``(seed, epoch)`` the example order is a
fixed permutation computed with numpy, and every random augmentation of an
example is drawn with ``tf.random.stateless_*`` ops seeded from
``(seed, epoch, example index)`` where *example index* is the row of the
example in the ``images`` array.  No stateful random op is used, so results do
not depend on call order, parallelism, or how many pipelines were built
before; restarting at epoch ``e`` reproduces epoch ``e`` exactly.

Augmentation order (training only): zero-pad + random crop on the raw pixels,
random horizontal flip, normalisation ``(x / 255 - mean) / std`` (``uint8``
images; ``float32`` images are already on [0, 1]: ``(x - mean) / std``), then
cutout.
Cutout sets the square to **0 after normalisation**, i.e. to the per-channel
training mean, as in DeVries & Taylor (2017).
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
import tensorflow as tf

__all__ = ["AugmentConfig", "make_image_pipeline"]


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation settings.

    Attributes:
      random_crop_padding: zero-pad each side by this many pixels, then crop a
        random window of the original size; 0 disables.
      horizontal_flip: mirror left-right with probability 1/2.
      cutout_size: side of a square set to 0 (after normalisation) centred at a
        uniformly random pixel and clipped at the borders; 0 disables.
    """

    random_crop_padding: int = 4
    horizontal_flip: bool = True
    cutout_size: int = 0

    def __post_init__(self):
        for field in ("random_crop_padding", "cutout_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"AugmentConfig.{field} must be an integer >= 0, got {value!r}")


def _epoch_key(seed: int, epoch: int) -> int:
    """A 63-bit integer key derived from (seed, epoch) for stateless TF ops."""
    state = np.random.SeedSequence([seed, epoch, 0x5EED]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def _check_nonneg_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _channel_constant(values, channels: int, name: str) -> tf.Tensor:
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, channels)
    if arr.size != channels:
        raise ValueError(f"{name} has {arr.size} entries but images have {channels} channels")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {values!r}")
    return tf.constant(arr, dtype=tf.float32)


def make_image_pipeline(images, labels, *, batch_size: int, training: bool, mean, std,
                        augment: AugmentConfig | None = None, seed: int = 0, epoch: int = 0,
                        drop_remainder: bool = False,
                        input_context: "tf.distribute.InputContext | None" = None
                        ) -> tf.data.Dataset:
    """Build a batched, normalised, deterministic ``tf.data.Dataset``.

    Args:
      images: ``uint8`` array ``[N, H, W, C]`` on 0..255, or ``float32`` on
        [0, 1] (``[N, H, W]`` gets a channel axis).
      labels: integer array ``[N]``.
      batch_size: global batch size (> 0).  With ``input_context`` the
        per-replica size ``input_context.get_per_replica_batch_size`` is used.
      training: if True, shuffle with the ``(seed, epoch)`` permutation and
        augment; if False, keep the input order and do not augment.
      mean, std: per-channel statistics on the [0, 1] scale (a scalar is
        broadcast to all channels); ``std`` must be positive.
      augment: augmentation settings used when ``training``; None means
        ``AugmentConfig()`` (pad-4 crop + flip, no cutout).  Pass
        ``AugmentConfig(0, False, 0)`` to shuffle without augmenting.
      seed, epoch: non-negative integers; the order and every augmentation draw
        are pure functions of ``(seed, epoch, example index)``.
      drop_remainder: drop the final partial batch.
      input_context: optional ``tf.distribute.InputContext``; after the
        deterministic shuffle, pipeline ``k`` of ``n`` keeps positions
        ``k, k+n, k+2n, ...`` so workers see disjoint examples.

    Returns:
      A dataset of ``(images float32 [B, H, W, C], labels int32 [B])``.

    Raises:
      ValueError: bad batch size, shapes, statistics, seed or epoch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    seed = _check_nonneg_int(seed, "seed")
    epoch = _check_nonneg_int(epoch, "epoch")

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must have shape [N,H,W,C], got {images.shape}")
    if images.dtype not in (np.uint8, np.float32):
        raise ValueError(f"images must be uint8 (0..255) or float32 (0..1), got {images.dtype}")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{images.shape[0]} images but {labels.shape[0]} labels")
    num_examples, height, width, channels = images.shape
    mean_t = _channel_constant(mean, channels, "mean")
    std_arr = np.asarray(std, dtype=np.float32)
    if np.any(std_arr <= 0):
        raise ValueError(f"std must be positive, got {std!r}")
    std_t = _channel_constant(std, channels, "std")

    if augment is None:
        augment = AugmentConfig()

    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)

    # ---- deterministic order and sharding (numpy, before anything TF) ----
    if training:
        order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    else:
        order = np.arange(num_examples)
    if input_context is not None and input_context.num_input_pipelines > 1:
        order = order[input_context.input_pipeline_id::input_context.num_input_pipelines]
    order = order.astype(np.int64)

    if training or order.shape[0] != num_examples:
        images_in, labels_in = images[order], labels[order]
    else:
        images_in, labels_in = images, labels
    labels_in = labels_in.astype(np.int32)

    def normalise(x):
        return (tf.cast(x, tf.float32) / scale - mean_t) / std_t

    if not training:
        ds = tf.data.Dataset.from_tensor_slices((images_in, labels_in))
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(lambda x, y: (normalise(x), y),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    key = _epoch_key(seed, epoch)
    pad = int(augment.random_crop_padding)
    flip = bool(augment.horizontal_flip)
    cut = int(augment.cutout_size)

    def augment_one(image, label, index):
        example_seed = tf.stack([tf.constant(key, tf.int64), index])
        sub = tf.random.experimental.stateless_split(example_seed, num=3)
        x = tf.cast(image, tf.float32)
        if pad > 0:
            x = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]])
            x = tf.image.stateless_random_crop(x, [height, width, channels], seed=sub[0])
        if flip:
            x = tf.image.stateless_random_flip_left_right(x, seed=sub[1])
        x = (x / scale - mean_t) / std_t
        if cut > 0:
            u = tf.random.stateless_uniform([2], seed=sub[2], dtype=tf.float32)
            cy = tf.minimum(tf.cast(u[0] * height, tf.int32), height - 1)
            cx = tf.minimum(tf.cast(u[1] * width, tf.int32), width - 1)
            y0, x0 = cy - cut // 2, cx - cut // 2
            rows = tf.range(height)
            cols = tf.range(width)
            in_rows = (rows >= y0) & (rows < y0 + cut)
            in_cols = (cols >= x0) & (cols < x0 + cut)
            inside = tf.logical_and(in_rows[:, None], in_cols[None, :])
            x = tf.where(inside[:, :, None], tf.zeros_like(x), x)
        x = tf.ensure_shape(x, [height, width, channels])
        return x, label

    ds = tf.data.Dataset.from_tensor_slices((images_in, labels_in, order))
    ds = ds.map(augment_one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
