"""One search run of any method (DATA, GDAS, DARTS, random) from plain settings.

Used by the search trainer and by the ablation runner, so that every
method is built and run the same way: the same SearchNetwork cells and
ops, the same data, optimisers and budgets.
"""

import dataclasses

from datanas.genotypes import CONV_PRIMITIVES
from datanas.methods import method_settings
from datanas.random_search import run_random_search
from datanas.search import run_search
from datanas.search_network import SearchNetwork

__all__ = ["SupernetShape", "build_search", "run_method_search", "random_epochs_per_candidate"]


@dataclasses.dataclass(frozen=True)
class SupernetShape:
    """Size of the search network (the paper's CIFAR search: 8 cells, C=16)."""
    num_cells: int = 8
    init_channels: int = 16
    num_nodes: int = 4
    num_samples: int = 4
    egs_scope: str = "node"
    primitives: tuple = CONV_PRIMITIVES


def random_epochs_per_candidate(search_epochs, candidates, requested=None):
    """Epochs each random candidate trains: `requested`, or the search's epoch
    budget shared out (at least one), so total weight training matches."""
    if requested is not None:
        return requested
    return max(1, search_epochs // candidates)


def build_search(method, num_classes, image_shape, config, shape, *, search_mode=None,
                 derivation=None, darts_order=1, random_candidates=8, random_epochs=None,
                 strategy=None):
    """Builds the (model, config) pair a method searches with.

    `config` is a SearchConfig whose estimator-related fields are replaced by
    the method's settings (explicit `search_mode`/`derivation` win).  For
    "random", `config.epochs` becomes the epochs per candidate.  The model is
    created in `strategy.scope()` when a strategy is given.
    """
    if method == "random":
        network = {"weighting": "egs", "mode": "sparse", "num_samples": shape.num_samples}
        config = dataclasses.replace(config, search_mode="joint", unrolled=False, epochs=(
            random_epochs_per_candidate(config.epochs, random_candidates, random_epochs)))
    else:
        settings = method_settings(method, num_samples=shape.num_samples, search_mode=search_mode,
                                   derivation=derivation, darts_order=darts_order)
        network = settings.network
        config = dataclasses.replace(config, **settings.config)

    def make():
        model = SearchNetwork(num_classes, init_channels=shape.init_channels,
                              num_cells=shape.num_cells, num_nodes=shape.num_nodes,
                              egs_scope=shape.egs_scope, primitives=shape.primitives,
                              temperature=config.initial_temperature,
                              seed=config.seed, **network)
        model.build((None,) + tuple(image_shape))
        return model

    if strategy is None:
        return make(), config
    with strategy.scope():
        return make(), config


def run_method_search(method, model, inputs, config, model_dir, *, random_candidates=8,
                      strategy=None, checkpoint_every_steps=200, verbose=1, metadata=None,
                      bn_recalibration_batches=0):
    """Runs the search of `method` (see build_search) and returns its SearchResult."""
    metadata = {**(metadata or {}), "method": method}
    if method == "random":
        return run_random_search(model, inputs, config, model_dir, candidates=random_candidates,
                                 strategy=strategy, verbose=verbose, metadata=metadata)
    return run_search(model, inputs, config, model_dir, strategy=strategy, verbose=verbose,
                      metadata=metadata, checkpoint_every_steps=checkpoint_every_steps,
                      bn_recalibration_batches=bn_recalibration_batches)
