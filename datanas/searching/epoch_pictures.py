"""What a search looks like after each epoch, so a user can watch the cell form.

For every epoch of a search (``SearchProgram`` calls these):

* ``cell_epoch_NNN.json`` in the run directory: the genotype derived from the
  logits of the end of epoch NNN (1-based) with the run's own rule and seed,
  the same derivation as the final ``genotype.json`` (so the last snapshot
  equals it);
* scalars ``expected_ops_per_edge/<kind>`` in the epoch's record (EGS
  estimators only): the mean over the cell's (node, input) edges of the
  expected number of non-'none' ops an M-draw sample switches on there, the
  sum of their inclusion probabilities 1-(1-p)^M;
* TensorBoard images ``arch_probabilities/<kind>``: the (edge x op) heat-map of
  the inclusion probabilities (softmax probabilities for softmax mixing), one
  per cell kind per epoch, rows and columns named in the image description;
* TensorBoard images ``cell/<kind>``: the derived cell drawn by Graphviz, when
  its ``dot`` program is on PATH (otherwise one line says so and they are
  skipped).

Nothing here changes training state: the derivation samples with its own
stateless seed, and the Python and numpy global random states are restored
after it (creating the derivation's estimator draws a default seed from
Python's ``random``), so a resumed search stays identical to an uninterrupted one.
"""

import contextlib
import os
import random

import numpy as np

from datanas.core.probability_image import probability_heatmap
from datanas.spaces.drawing import (INSTALL_HINT, cell_kinds, dot_available, genotype_dot,
                                    render_dot)
from datanas.engine.run_files import write_json_atomic

__all__ = ["EpochPictures", "snapshot_path"]


def snapshot_path(model_dir, epoch):
    """Path of the genotype snapshot after 0-based `epoch` (cell_epoch_001.json first)."""
    return os.path.join(model_dir, f"cell_epoch_{epoch + 1:03d}.json")


@contextlib.contextmanager
def _global_random_states_kept():
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


class EpochPictures:
    """Per-epoch genotype snapshots, probability scalars and images of a search.

    Args:
      space: the SearchSpace of the search.
      model: its supernet.
      model_dir: the run directory (snapshots are written there).
      rule: the derivation rule of the run's genotype.json.
      seed: the run's seed (the derivation's).
      verbose: print the one line saying cell images are skipped without Graphviz.
    """

    def __init__(self, space, model, model_dir, *, rule, seed, verbose=1):
        self.space, self.model, self.model_dir = space, model, model_dir
        self.rule, self.seed, self.verbose = rule, seed, verbose
        self._draw_cells = None   # decided at the first epoch
        self._genotype = None
        self._probabilities = None

    def _derive(self):
        with _global_random_states_kept():
            return self.space.derive(self.model, self.rule, self.seed)

    def _value_key(self):
        return "inclusion" if getattr(self.model.estimator, "binary_codes", False) else "p"

    def end_epoch(self, epoch):
        """Writes the epoch's genotype snapshot; returns the epoch's scalars.

        Returns {} (and writes nothing) when the logits are not finite: the
        run loop then stops with its own error.
        """
        logits = [np.asarray(v.numpy()) for v in self.model.architecture_variables]
        if not all(np.all(np.isfinite(values)) for values in logits):
            self._genotype = self._probabilities = None
            return {}
        self._genotype = self._derive()
        self._probabilities = self.space.probabilities(self.model)
        write_json_atomic(snapshot_path(self.model_dir, epoch),
                          {"epoch": epoch + 1, "derivation": self.rule,
                           "genotype": self._genotype.to_dict()})
        if not getattr(self.model.estimator, "binary_codes", False):
            return {}
        primitives = list(self._probabilities["primitives"])
        keep = [k for k, name in enumerate(primitives) if name != "none"]
        scalars = {}
        for kind in self._kinds():
            per_edge = [row for node in self._probabilities[kind]
                        for row in np.asarray(node["inclusion"], np.float64)[:, keep].sum(axis=1)]
            scalars[f"expected_ops_per_edge/{kind}"] = float(np.mean(per_edge))
        return scalars

    def _kinds(self):
        """The genotype's cell kinds (``cell_kinds``) that the space's
        ``probabilities()`` holds per-node entries for."""
        return [kind for kind in cell_kinds(self._genotype) if kind in self._probabilities]

    def write_summaries(self, epoch):
        """The epoch's images, into the default TensorBoard writer (the run
        loop's, step = epoch + 1)."""
        del epoch
        if self._probabilities is None:
            return
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        key = self._value_key()
        primitives = list(self._probabilities["primitives"])
        what = ("inclusion probability 1-(1-p)^M of each (edge, op) under EGS with "
                f"M={self._probabilities.get('num_samples')}" if key == "inclusion"
                else "softmax probability of each (edge, op)")
        for kind in self._kinds():
            nodes = self._probabilities[kind]
            image = probability_heatmap([node[key] for node in nodes])
            rows = self.space.probability_rows(kind, len(nodes))
            description = (f"{kind} cell: {what}, scope {self._probabilities.get('scope')}; "
                           "dark purple = 0, yellow = 1 (scale at the right). Columns, left to "
                           f"right: {', '.join(primitives)}. Rows, top to bottom (a white line "
                           f"between nodes): {'; '.join(rows)}.")
            tf.summary.image(f"arch_probabilities/{kind}", image[None], description=description)
        if self._cells_drawable():
            for kind in self._kinds():
                png = render_dot(genotype_dot(self._genotype, kind), "png")
                image = tf.image.decode_png(png, channels=3)
                tf.summary.image(f"cell/{kind}", image[None],
                                 description=f"the {kind} cell derived (rule {self.rule}) from "
                                             "the logits at the end of this epoch")

    def _cells_drawable(self):
        if self._draw_cells is None:
            self._draw_cells = dot_available()
            if not self._draw_cells and self.verbose:
                print("TensorBoard cell images skipped: the Graphviz program 'dot' is not on "
                      f"PATH; {INSTALL_HINT}.", flush=True)
        return self._draw_cells
