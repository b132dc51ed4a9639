"""EnsembleGumbelSoftmax outside architecture search: learn which groups of
input features to keep, several at once.

The 8x8 images of scikit-learn's digits (1797 handwritten digits, shipped with
scikit-learn, nothing downloaded) are cut into 16 groups of 2x2 pixels.  A
``FeatureGroupGate`` layer holds one logit per group; at every training step
its EnsembleGumbelSoftmax draws M hard Gumbel-Softmax samples and keeps the
groups any of them picked (a 0/1 mask with 1..M groups on), and the
straight-through gradient trains the logits together with the classifier by
plain ``model.fit``.  At inference the gate keeps the groups whose inclusion
probability 1-(1-p)^M is at least 0.5 (deterministic), so the model looks at a
few 2x2 patches only.  The model is saved as ``.keras``, reloaded, and must
predict identically.  A model.keras already in --output_dir is kept as
``model.attempt-<n>.keras`` (never replaced); a run directory (one holding
run_identity.json) is refused as --output_dir.

    python examples/feature_groups.py                 # M=4, 30 epochs, ~10 s on 2 CPU cores
    python examples/feature_groups.py --samples=2 --epochs=60 --output_dir=/tmp/groups
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Runnable from a checkout without installing: the repository root on the path.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from datanas.engine.run_files import RunWriteFailed, write_file_atomic  # noqa: E402
from datanas.engine.run_identity import (IDENTITY_FILE, RunRefused, check_output_dir,  # noqa: E402
                                         keep_as_attempt)
from datanas.layers import EnsembleGumbelSoftmax  # noqa: E402

IMAGE_SIDE = 8
NUM_CLASSES = 10


def patch_groups(side=IMAGE_SIDE, patch=2):
    """Feature indices of each patch x patch block of a side x side image,
    row-major blocks: [[0, 1, 8, 9], [2, 3, 10, 11], ...]."""
    if side % patch:
        raise ValueError(f"patch size {patch} must divide the image side {side}")
    groups = []
    for top in range(0, side, patch):
        for left in range(0, side, patch):
            groups.append([(top + r) * side + left + c for r in range(patch)
                           for c in range(patch)])
    return groups


@keras.saving.register_keras_serializable(package="datanas_examples")
class FeatureGroupGate(keras.layers.Layer):
    """Multiplies the features of the groups an EGS code keeps by 1, the rest by 0.

    Args:
      groups: list of lists of feature indices (disjoint).
      num_features: length of the input feature vector.
      num_samples: M, the most groups one training step keeps.
      temperature: initial EGS temperature (annealed by `TemperatureSchedule`).
      seed: seed of the EGS random stream.
    """

    def __init__(self, groups, num_features, num_samples=4, temperature=1.0, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.groups = [[int(i) for i in group] for group in groups]
        self.num_features = int(num_features)
        flat = [i for group in self.groups for i in group]
        if len(set(flat)) != len(flat) or not all(0 <= i < self.num_features for i in flat):
            raise ValueError(f"groups must be disjoint feature indices in "
                             f"0..{self.num_features - 1}")
        assignment = np.zeros((len(self.groups), self.num_features), np.float32)
        for g, group in enumerate(self.groups):
            assignment[g, group] = 1.0
        self.assignment = assignment           # [groups, features], a constant
        self.egs = EnsembleGumbelSoftmax(num_samples=num_samples, temperature=temperature,
                                         seed=seed)
        self.group_logits = self.add_weight(shape=(len(self.groups),), initializer="zeros",
                                            name="group_logits")

    def code(self, training=False):
        """The 0/1 vector of kept groups (a sample when training)."""
        return self.egs(self.group_logits, training=training)

    def call(self, inputs, training=None):
        mask = tf.linalg.matvec(self.assignment, self.code(training), transpose_a=True)
        return inputs * tf.cast(mask, inputs.dtype)

    def kept_groups(self):
        """Indices of the groups kept at inference."""
        return [int(g) for g in np.flatnonzero(self.code(training=False).numpy() > 0.5)]

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups, "num_features": self.num_features,
                       "num_samples": self.egs.num_samples,
                       "temperature": float(self.egs.temperature.numpy()),
                       "seed": self.egs.seed})
        return config


class TemperatureSchedule(keras.callbacks.Callback):
    """Anneals the gate's EGS temperature linearly from `start` to `end` over the epochs."""

    def __init__(self, gate, epochs, start=5.0, end=1.0):
        super().__init__()
        self.gate, self.epochs, self.start, self.end = gate, epochs, start, end

    def on_epoch_begin(self, epoch, logs=None):
        fraction = epoch / max(self.epochs - 1, 1)
        self.gate.egs.set_temperature(self.start + (self.end - self.start) * fraction)


def build_model(num_samples, seed, patch=2):
    """Input 64 pixels -> FeatureGroupGate -> MLP -> 10 classes."""
    gate = FeatureGroupGate(patch_groups(IMAGE_SIDE, patch), IMAGE_SIDE * IMAGE_SIDE,
                            num_samples=num_samples, temperature=5.0, seed=seed, name="gate")
    inputs = keras.Input((IMAGE_SIDE * IMAGE_SIDE,))
    hidden = keras.layers.Dense(64, activation="relu")(gate(inputs))
    outputs = keras.layers.Dense(NUM_CLASSES)(hidden)
    model = keras.Model(inputs, outputs, name="feature_groups")
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model, gate


def load_digits_split(seed, test_fraction=0.25):
    """Digits scaled to [0, 1], shuffled with `seed`, split into train / test."""
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
    images, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(labels))
    images, labels = (images[order] / 16.0).astype(np.float32), labels[order].astype(np.int32)
    cut = int(len(labels) * (1.0 - test_fraction))
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])


def kept_pixels_picture(groups, kept):
    """The 8x8 image as text: '#' for a kept pixel, '.' for a dropped one."""
    grid = np.full(IMAGE_SIDE * IMAGE_SIDE, ".")
    for g in kept:
        grid[groups[g]] = "#"
    return "\n".join("".join(row) for row in grid.reshape(IMAGE_SIDE, IMAGE_SIDE))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4, help="M: most groups kept per step")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patch", type=int, default=2, help="side of a pixel group")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default=None,
                        help="where model.keras goes (default: a temporary directory)")
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2),
                        help="model.fit verbosity")
    args = parser.parse_args(argv)
    # Every value checked before the data is read (one line each, as the trainers).
    for name, low, what in (("samples", 1, "the most groups kept per step"),
                            ("epochs", 1, "training epochs"), ("seed", 0, "a seed")):
        if getattr(args, name) < low:
            parser.error(f"--{name}={getattr(args, name)}: must be an integer >= {low} ({what}).")
    sides = [p for p in range(1, IMAGE_SIDE + 1) if IMAGE_SIDE % p == 0]
    if args.patch not in sides:
        parser.error(f"--patch={args.patch}: a group's side must divide the {IMAGE_SIDE}-pixel "
                     f"image side; allowed: {', '.join(map(str, sides))}.")
    if args.output_dir is not None:
        try:   # a file, unwritable, or inside a run directory
            check_output_dir(args.output_dir, flag="--output_dir")
        except RunRefused as error:
            parser.error(str(error))
        if os.path.isfile(os.path.join(args.output_dir, IDENTITY_FILE)):
            parser.error(f"--output_dir={args.output_dir} is a run directory ({IDENTITY_FILE}), "
                         "whose files only its run writes; choose another directory.")

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_digits_split(args.seed)
    model, gate = build_model(args.samples, args.seed, args.patch)
    model.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=args.verbose,
              callbacks=[TemperatureSchedule(gate, args.epochs)])
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    kept = gate.kept_groups()
    probabilities = tf.nn.softmax(gate.group_logits).numpy()

    output_dir = args.output_dir or tempfile.mkdtemp(prefix="feature_groups_")
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "model.keras")
    if os.path.lexists(path):   # an earlier run's model is kept, never replaced
        print(f"{path} already existed: kept as {keep_as_attempt(path)}.")
    try:   # atomic: a failed save (a full disk) leaves no half-written file
        write_file_atomic(path, model.save)
    except RunWriteFailed as error:
        sys.exit(f"feature_groups: error: {error}")
    reloaded = keras.models.load_model(path)
    identical = bool(np.array_equal(model.predict(x_test, verbose=0),
                                    reloaded.predict(x_test, verbose=0)))

    print(f"kept {len(kept)} of {len(gate.groups)} groups of {args.patch}x{args.patch} pixels "
          f"(M={args.samples}): {kept}; their probabilities "
          f"{[round(float(probabilities[g]), 3) for g in kept]}")
    print(kept_pixels_picture(gate.groups, kept))
    print(f"test accuracy {test_accuracy:.3f} from {len(kept) * args.patch ** 2} of "
          f"{IMAGE_SIDE * IMAGE_SIDE} pixels (chance {1 / NUM_CLASSES:.2f}, loss {test_loss:.3f})")
    print(f"saved {path}; reloaded model predicts identically: {identical}")
    return {"test_accuracy": float(test_accuracy), "kept_groups": kept,
            "num_groups": len(gate.groups), "reload_identical": identical, "path": path}


if __name__ == "__main__":
    main()
