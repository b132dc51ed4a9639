"""GDAS as its code runs it: weights on the training split, logits on a
held-out split, one hard Gumbel op per edge, tau 10 -> 0.1 linear per
epoch, GDAS' Adam, top-2 argmax derivation."""

import json

import numpy as np
import pytest

from datanas.searching.config import SearchConfig
from datanas.searching.runs import build_search, resolve_method
from datanas.spaces.darts_cnn.space import SupernetShape

PRIMITIVES = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")


def _shape(**overrides):
    settings = dict(num_cells=3, init_channels=4, num_nodes=2, num_samples=1,
                    primitives=PRIMITIVES)
    settings.update(overrides)
    return SupernetShape(**settings)


def test_gdas_resolves_to_its_own_recipe_unless_a_setting_is_given():
    network, config = resolve_method("gdas", SearchConfig(epochs=3), _shape())
    assert network == {"weighting": "egs", "mode": "sparse", "num_samples": 1, "scope": "edge",
                       "egs_gradient": "sampled", "edge_combine": "mean"}
    assert (config.search_mode, config.unrolled, config.derivation) == (
        "alternate", False, "darts")
    assert (config.initial_temperature, config.final_temperature) == (10.0, 0.1)
    assert (config.arch_learning_rate, config.arch_beta_1, config.arch_beta_2,
            config.arch_weight_decay) == (3e-4, 0.5, 0.999, 1e-3)
    # Explicit temperatures win (each on its own).
    _, config = resolve_method("gdas", SearchConfig(epochs=3, initial_temperature=4.0),
                               _shape())
    assert (config.initial_temperature, config.final_temperature) == (4.0, 0.1)
    # The joint hybrid gdas ran before keeps DATA's step and temperatures.
    _, hybrid = resolve_method("snas_like", SearchConfig(epochs=3), _shape())
    assert (hybrid.search_mode, hybrid.initial_temperature, hybrid.final_temperature) == (
        "joint", 5.0, 1.0)


def test_gdas_alternates_splits_anneals_10_to_01_and_derives_top2(tmp_path, global_seed):
    pytest.importorskip("sklearn")
    from data_tf.image_datasets import load_image_dataset  # pylint: disable=import-outside-toplevel
    from data_tf.search_inputs import make_search_inputs  # pylint: disable=import-outside-toplevel
    from datanas.searching import run as run_module  # pylint: disable=import-outside-toplevel
    from datanas.searching.run import run_search  # pylint: disable=import-outside-toplevel
    from datanas.spaces.darts_cnn.genotype import load_genotype  # pylint: disable=import-outside-toplevel

    global_seed(0)
    dataset = load_image_dataset("digits")
    model, config = build_search("gdas", dataset.num_classes, dataset.image_shape,
                                 SearchConfig(epochs=3, seed=0, execution="host"), _shape())
    inputs = make_search_inputs(dataset, batch_size=32, train_size=160, seed=0,
                                separate_arch_split=config.search_mode == "alternate")
    assert inputs.arch is not None   # a held-out architecture split exists

    # Each search step: the logits move on the held-out batch only, the
    # weights on the training batch only.
    searcher_class = run_module.Searcher
    seen = []

    class Recording(searcher_class):
        def search_step(self, train_batch, arch_batch=None):
            steps = {"arch": self.arch_step, "weights": self.weight_step}

            def recorded(kind):
                def step(batch):
                    weights = [v.numpy().copy() for v in self.model.network_variables]
                    logits = [v.numpy().copy() for v in self.model.architecture_variables]
                    out = steps[kind](batch)
                    seen.append((kind, batch, _moved(weights, self.model.network_variables),
                                 _moved(logits, self.model.architecture_variables)))
                    return out
                return step

            self.arch_step, self.weight_step = recorded("arch"), recorded("weights")
            try:
                return super().search_step(train_batch, arch_batch)
            finally:
                self.arch_step, self.weight_step = steps["arch"], steps["weights"]

    run_module.Searcher = Recording
    try:
        result = run_search(model, inputs, config, str(tmp_path), verbose=0)
    finally:
        run_module.Searcher = searcher_class
    steps = len(seen) // 2
    assert steps == 3 * inputs.steps_per_epoch and len(seen) == 2 * steps
    arch_images = {r for kind, b, _, _ in seen if kind == "arch" for r in _rows(b)}
    train_images = {r for kind, b, _, _ in seen if kind == "weights" for r in _rows(b)}
    held_out = {r for e in range(3) for b in inputs.arch(e) for r in _rows(b)}
    assert arch_images and arch_images <= held_out and not train_images & held_out
    assert all(logits_moved and not weights_moved
               for kind, _, weights_moved, logits_moved in seen if kind == "arch")
    assert all(weights_moved and not logits_moved
               for kind, _, weights_moved, logits_moved in seen if kind == "weights")

    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [h for h in history if "temperature" in h]
    # tau_max - (tau_max - tau_min) * epoch / (epochs - 1), set per epoch.
    assert [h["temperature"] for h in epochs] == pytest.approx([10.0, 5.05, 0.1])

    # Top-2 argmax derivation: genotype.json is the darts rule's cell.
    assert result.final["derivation"] == "darts"
    assert load_genotype(str(tmp_path / "genotype.json")) == load_genotype(
        str(tmp_path / "genotype_darts.json"))
    assert all(len(pairs) == 2 for pairs in load_genotype(str(tmp_path)).normal)


def _moved(before, variables):
    return any(not np.array_equal(a, v.numpy()) for a, v in zip(before, variables))


def _rows(batch):
    """Each example's image as bytes (a batch may be a replica-local tuple)."""
    images = batch[0]
    images = getattr(images, "values", (images,))[0]
    return [row.tobytes() for row in np.asarray(images)]
