"""Search and train on your own images: write a small class-folder tree of
real PNG and JPEG files (three classes of synthetic shapes, mixed sizes,
grayscale and colour), search a cell on it with ``--dataset=folder``, train the
found cell from scratch, export it and serve the export on the held-out test
images.

    python examples/own_images.py --output_dir=/tmp/own_images

Replace the generated tree by your own (``--data_dir=DIR`` with one
sub-folder per class, docs/datasets.md) to run the same three steps on it.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Runnable from a checkout without installing: the repository root on the path.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_tf.image_datasets import load_image_dataset  # noqa: E402
from data_tf.own_images import MIN_IMAGE_SIDE  # noqa: E402
from datanas.engine.run_identity import RunRefused, check_output_dir  # noqa: E402

CLASSES = ("bars", "discs", "squares")


def _shape(kind, size, rng):
    """One size x size image of `kind` on a noisy background, float [0, 1]."""
    yy, xx = np.mgrid[:size, :size] / size
    cy, cx = rng.uniform(0.35, 0.65, 2)
    radius = rng.uniform(0.18, 0.3)
    if kind == "discs":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2
    elif kind == "squares":
        mask = (abs(yy - cy) < radius) & (abs(xx - cx) < radius)
    else:
        mask = abs(xx - cx) < radius / 3
    return np.clip(0.2 * rng.random((size, size)) + 0.7 * mask, 0, 1)


def write_tree(directory, per_class, seed=0):
    """directory/<class>/<n>.png|jpg: every third file grayscale PNG, the rest
    RGB JPEG in a random tint; sides 20..40 pixels.  Returns the file count."""
    rng = np.random.default_rng(seed)
    count = 0
    for kind in CLASSES:
        os.makedirs(os.path.join(directory, kind), exist_ok=True)
        for i in range(per_class):
            gray = _shape(kind, int(rng.integers(20, 41)), rng)
            if i % 3 == 0:
                pixels = np.round(255 * gray[..., None]).astype(np.uint8)
                data, name = tf.io.encode_png(pixels), f"{i:03d}.png"
            else:
                tint = rng.uniform(0.4, 1.0, 3)
                pixels = np.round(255 * gray[..., None] * tint).astype(np.uint8)
                data, name = tf.io.encode_jpeg(pixels, quality=90), f"{i:03d}.jpg"
            tf.io.write_file(os.path.join(directory, kind, name), data)
            count += 1
    return count


def _run(module, *args):
    cmd = [sys.executable, "-m", module, *args]
    print("$ " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                          capture_output=True, text=True)
    if proc.returncode:
        # A trainer's refusal is one "<trainer>: error: ..." line: shown alone.
        refusals = [line for line in proc.stderr.splitlines() if ": error: " in line]
        sys.exit(f"own_images: error: {module} stopped: {refusals[-1]}" if refusals
                 else f"{module} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def _check_arguments(parser, args):
    """Every value refused before anything is written or run, in one line
    naming it and what is allowed (the trainers' own lower bounds)."""
    bounds = (("per_class", 2, "one image of each class is held out for testing"),
              ("image_size", MIN_IMAGE_SIDE, "pixels a side the network needs"),
              ("search_epochs", 1, "epochs"), ("train_epochs", 1, "epochs"),
              ("layers", 1, "cells"), ("init_channels", 2, "channels"),
              ("batch_size", 1, "images"))
    for name, low, what in bounds:
        if getattr(args, name) < low:
            parser.error(f"--{name}={getattr(args, name)}: must be an integer >= {low} ({what}).")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        parser.error(f"--data_dir={args.data_dir} is not a directory; give a class-folder tree "
                     "(one sub-folder of images per class), or leave it out to generate one.")
    try:   # a file, unwritable, or inside a run directory
        check_output_dir(args.output_dir, flag="--output_dir")
    except RunRefused as error:
        parser.error(str(error))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="Where the tree and runs go.")
    parser.add_argument("--data_dir", default=None,
                        help="Your own class-folder tree (default: write one in output_dir).")
    parser.add_argument("--per_class", type=int, default=60, help="Generated images a class.")
    parser.add_argument("--image_size", type=int, default=16, help="Images resized to N x N.")
    parser.add_argument("--search_epochs", type=int, default=4)
    parser.add_argument("--train_epochs", type=int, default=8)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--init_channels", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args(argv)
    _check_arguments(parser, args)

    data_dir = args.data_dir
    if data_dir is None:
        data_dir = os.path.join(args.output_dir, "images")
        count = write_tree(data_dir, args.per_class)
        print(f"wrote {count} images in {len(CLASSES)} class folders under {data_dir}")
    data = ["--dataset=folder", f"--data_dir={data_dir}", f"--image_size={args.image_size}",
            f"--layers={args.layers}", f"--init_channels={args.init_channels}",
            f"--batch_size={args.batch_size}"]
    search_dir = os.path.join(args.output_dir, "search")
    train_dir = os.path.join(args.output_dir, "train")
    export_dir = os.path.join(train_dir, "saved_model")
    _run("trainers.search_cifar", *data, f"--epochs={args.search_epochs}",
         f"--model_dir={search_dir}")
    genotype = os.path.join(search_dir, "genotype.json")
    print(f"found cell: {genotype}")
    _run("trainers.train_cifar", *data, f"--epochs={args.train_epochs}", "--cutout=0",
         "--validation_fraction=0.1", f"--genotype={genotype}", f"--model_dir={train_dir}",
         f"--export_dir={export_dir}")
    with open(os.path.join(train_dir, "results.json")) as f:
        recorded = json.load(f)["final"]["test_accuracy"]

    # Serve the export on the held-out test images, normalised as the trainer does.
    dataset = load_image_dataset("folder", data_dir, image_size=args.image_size)
    images = (dataset.test_images.astype(np.float32) / 255 - np.float32(dataset.mean)) \
        / np.float32(dataset.std)
    loaded = tf.saved_model.load(export_dir)
    logits = loaded.serve(tf.constant(images)).numpy()
    served = float(np.mean(logits.argmax(-1) == dataset.test_labels))
    print(f"exported network: test accuracy {served:.4f} on {len(images)} held-out images "
          f"(trainer recorded {recorded:.4f}); classes {list(dataset.class_names)}")
    return {"genotype": genotype, "export_dir": export_dir, "served_test_accuracy": served,
            "recorded_test_accuracy": recorded, "test_images": len(images),
            "class_names": dataset.class_names}


if __name__ == "__main__":
    main()
