"""Check a shipped Fashion-MNIST result: serve the exported network on the
10,000 test images and compare its accuracy with the recorded one.

The result card ``docs/results/fashion_mnist.json`` names the genotype and the
training command; the trainer's ``--export_dir`` holds the SavedModel (not
committed: retrain with the card's command to get it).  The images are read
from Debian's ``dataset-fashion-mnist`` (or a TFDS/IDX directory via
``--data_dir``) and normalised exactly as the trainer does.

    python examples/check_fashion_mnist.py --export_dir=runs/fmnist_final/saved_model

Exits with status 1 when the served accuracy differs from the card's by more
than ``--tolerance`` (default: one test image).
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Runnable from a checkout without installing: the repository root on the path.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, ROOT)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from data_tf.image_datasets import DatasetNotFoundError, load_image_dataset  # noqa: E402


#: What the export must take: Fashion-MNIST's 28x28 grayscale images.
IMAGE_SHAPE = (28, 28, 1)


def served_input_shape(loaded):
    """The per-image input shape of a loaded export's ``serve`` endpoint
    (None for an axis of any size), or None when it declares none."""
    for function in getattr(loaded.serve, "concrete_functions", ()):
        args, _ = function.structured_input_signature
        if args and args[0].shape.rank is not None:
            return tuple(args[0].shape.as_list()[1:])
    return None


def served_accuracy(export_dir, data_dir=None, batch_size=500):
    """Test accuracy of the SavedModel's ``serve`` endpoint, and the test-set size.

    An export that takes another input shape than Fashion-MNIST's images is
    refused (ValueError, one line naming both shapes) before the data is read.
    """
    loaded = tf.saved_model.load(export_dir)   # keep it referenced while serving
    found = served_input_shape(loaded)
    if found is not None and not tf.TensorShape((None,) + found).is_compatible_with(
            (None,) + IMAGE_SHAPE):
        raise ValueError(f"--export_dir={export_dir} serves images of shape {found}, but "
                         f"Fashion-MNIST's are {IMAGE_SHAPE}: export a network trained on "
                         "Fashion-MNIST.")
    data = load_image_dataset("fashion_mnist", data_dir)
    images = (data.test_images.astype(np.float32) / 255 - np.float32(data.mean)) \
        / np.float32(data.std)
    logits = np.concatenate([loaded.serve(images[i:i + batch_size]).numpy()
                             for i in range(0, len(images), batch_size)])
    return float(np.mean(logits.argmax(-1) == data.test_labels)), len(images)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export_dir", required=True,
                        help="SavedModel written by train_cifar --export_dir.")
    parser.add_argument("--result", default=os.path.join(ROOT, "docs", "results",
                                                         "fashion_mnist.json"),
                        help="Result card holding the recorded test_accuracy.")
    parser.add_argument("--data_dir", default=None, help="Fashion-MNIST directory (optional).")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="Largest allowed |served - recorded| accuracy difference.")
    args = parser.parse_args(argv)
    if not args.tolerance >= 0:
        parser.error(f"--tolerance={args.tolerance}: must be a number >= 0 (an accuracy "
                     "difference).")
    if not os.path.isfile(os.path.join(args.export_dir, "saved_model.pb")):
        parser.error(f"--export_dir={args.export_dir} holds no saved_model.pb; train with the "
                     "result card's command (it passes --export_dir) first.")
    try:
        with open(args.result) as f:
            recorded = json.load(f)["test_accuracy"]
    except (OSError, KeyError, ValueError) as error:
        parser.error(f"--result={args.result}: no readable test_accuracy ({error}).")
    try:
        accuracy, count = served_accuracy(args.export_dir, args.data_dir)
    except (DatasetNotFoundError, ValueError) as error:
        parser.error(str(error))
    print(f"served test accuracy {accuracy:.4f} on {count} images; recorded {recorded:.4f}")
    if abs(accuracy - recorded) > args.tolerance:
        print(f"MISMATCH: |{accuracy:.4f} - {recorded:.4f}| > {args.tolerance}")
        return 1
    print("OK: the exported network reproduces the recorded accuracy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
