"""A small synthetic VOCdevkit in the real on-disk format, for tests and smoke runs.

    python -m data_tf.voc_synthetic /tmp/voc_fixture [--train=24 --val=8]

writes ``<dir>/VOCdevkit/VOC2012`` with JPEG images, *palette* PNG masks
(colour type 3 with the VOC palette, written byte by byte here with
zlib/struct, so the reader is checked against the format rather than
against the library that reads it) and ``ImageSets/Segmentation`` lists.
Each image has a noisy grey background (class 0) and one or two
rectangles, each a class-specific colour, outlined in the mask by a
2-pixel band of 255 (ignore) as VOC outlines objects.  Image sizes vary
and are odd on purpose.  A network can learn it in a few CPU minutes; it
says nothing about VOC accuracy.
"""

import os
import struct
import sys
import zlib

import numpy as np

from data_tf.voc import IGNORE_LABEL, voc_colormap

__all__ = ["encode_palette_png", "write_synthetic_vocdevkit", "FIXTURE_CLASSES"]

#: Classes drawn in the fixture and their colours (RGB).
FIXTURE_CLASSES = {1: (220, 40, 40), 8: (40, 200, 60), 15: (50, 80, 230)}
_SIZES = ((67, 91), (80, 64), (75, 75), (96, 71), (59, 83))


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_palette_png(indices, palette=None):
    """Bytes of an 8-bit palette PNG whose pixels store `indices` (uint8 [H, W])."""
    indices = np.asarray(indices, dtype=np.uint8)
    height, width = indices.shape
    palette = voc_colormap() if palette is None else np.asarray(palette, np.uint8)
    rows = b"".join(b"\x00" + indices[row].tobytes() for row in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
            + _chunk(b"PLTE", palette.tobytes())
            + _chunk(b"IDAT", zlib.compress(rows, 9))
            + _chunk(b"IEND", b""))


def _example(rng, index):
    height, width = _SIZES[index % len(_SIZES)]
    image = rng.normal(128, 20, size=(height, width, 3))
    mask = np.zeros((height, width), np.uint8)
    classes = list(FIXTURE_CLASSES)
    for _ in range(1 + index % 2):
        label = classes[rng.integers(len(classes))]
        h, w = rng.integers(height // 4, height // 2), rng.integers(width // 4, width // 2)
        top, left = rng.integers(2, height - h - 2), rng.integers(2, width - w - 2)
        mask[top - 2:top + h + 2, left - 2:left + w + 2] = IGNORE_LABEL
        mask[top:top + h, left:left + w] = label
        image[top:top + h, left:left + w] = (np.array(FIXTURE_CLASSES[label])
                                             + rng.normal(0, 20, size=(h, w, 3)))
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_synthetic_vocdevkit(directory, num_train=24, num_val=8, seed=0):
    """Writes the fixture under `directory`; returns its VOC2012 path."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    root = os.path.join(directory, "VOCdevkit", "VOC2012")
    for sub in ("JPEGImages", "SegmentationClass", os.path.join("ImageSets", "Segmentation")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"2007_{index:06d}" for index in range(num_train + num_val)]
    for index, image_id in enumerate(ids):
        image, mask = _example(rng, index)
        with open(os.path.join(root, "JPEGImages", f"{image_id}.jpg"), "wb") as handle:
            handle.write(tf.io.encode_jpeg(image, quality=95).numpy())
        with open(os.path.join(root, "SegmentationClass", f"{image_id}.png"), "wb") as handle:
            handle.write(encode_palette_png(mask))
    lists = {"train": ids[:num_train], "val": ids[num_train:], "trainval": ids}
    for name, members in lists.items():
        with open(os.path.join(root, "ImageSets", "Segmentation", f"{name}.txt"), "w",
                  encoding="utf-8") as handle:
            handle.write("".join(f"{i}\n" for i in members))
    return root


def main(argv):
    """Command line: one positional directory, --train/--val image counts."""
    if len(argv) != 2:
        sys.exit("voc_synthetic: error: give exactly one output directory, got "
                 f"{argv[1:] or 'none'}; usage: python -m data_tf.voc_synthetic DIR "
                 "[--train=24 --val=8]")
    from absl import flags as absl_flags  # pylint: disable=import-outside-toplevel
    values = absl_flags.FLAGS
    print(write_synthetic_vocdevkit(argv[1], values.train, values.val))


if __name__ == "__main__":
    from absl import app
    from absl import flags as _flags

    _flags.DEFINE_integer("train", 24, "Images in the train list.", lower_bound=1)
    _flags.DEFINE_integer("val", 8, "Images in the val list.", lower_bound=1)
    app.run(main)
