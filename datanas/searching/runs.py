"""One search run of any method (DATA, GDAS, DARTS, random) from plain settings.

Used by the search trainer and the ablation runner, so that every method
is built and run the same way: the same space, cells and ops, the same
data, optimisers and budgets.  The space is chosen by name.
"""

import dataclasses

from datanas.searching.methods import (DEFAULT_DERIVATION, EGS_METHODS, method_arch_weight_decay, method_scope,
                                    method_settings, method_temperatures)
from datanas.searching.random_search import run_random_search
from datanas.searching.run import run_search
from datanas.spaces import get_space

__all__ = ["resolve_method", "build_search", "run_method_search",
           "random_epochs_per_candidate"]


def random_epochs_per_candidate(total_epochs, candidates):
    """Epochs each random candidate trains: `total_epochs` of weight training
    shared out over `candidates`, the remainder one epoch each to the first
    candidates (20 over 8: [3, 3, 3, 3, 2, 2, 2, 2]), so the search costs
    the same weight-training epochs as the search it is compared with.

    Raises:
      ValueError: fewer epochs than candidates (a candidate would not train).
    """
    for name, value in (("epochs", total_epochs), ("candidates", candidates)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"random search {name} must be a positive integer, got {value!r}.")
    if total_epochs < candidates:
        raise ValueError(f"random search shares {total_epochs} epoch(s) of weight training "
                         f"over {candidates} candidates: each needs at least one; lower "
                         "--random_candidates, raise --epochs, or set --random_epochs.")
    base, extra = divmod(total_epochs, candidates)
    return [base + 1] * extra + [base] * (candidates - extra)


def resolve_method(method, config, shape, *, space="darts_cnn", search_mode=None,
                   derivation=None, darts_order=1, random_candidates=8, random_epochs=None):
    """(supernet settings, SearchConfig) of `method`, without building anything.

    `config` is a SearchConfig whose estimator-related fields are replaced by
    the method's settings (explicit `search_mode`/`derivation` win, and so
    do the config's own temperatures, logit decay, egs_gradient and
    edge_combine where they are not None).  One config may serve several
    methods (the ablation runner's): its egs_gradient and edge_combine apply
    to the EGS methods only (methods.EGS_METHODS).  For "random",
    `config.epochs` is the search's weight-training epochs in all, shared
    out over the candidates (random_epochs_per_candidate; `random_epochs`:
    that many per candidate instead, `random_epochs` x candidates in all).
    `shape` is the space's settings (``space.settings_class``); its
    ``egs_scope`` None means the method's default.
    """
    space = get_space(space) if isinstance(space, str) else space
    method_scope(method, None)   # an unknown method: one line naming the allowed ones
    if method == "random":
        network = {"weighting": "egs", "mode": "sparse", "num_samples": shape.num_samples,
                   "scope": method_scope("random", shape.egs_scope)}
        initial, final = method_temperatures("random", config.initial_temperature,
                                             config.final_temperature)
        config = dataclasses.replace(
            config, search_mode="joint", unrolled=False,
            arch_weight_decay=method_arch_weight_decay("random", config.arch_weight_decay),
            initial_temperature=initial, final_temperature=final,
            epochs=(config.epochs if random_epochs is None
                    else random_epochs * random_candidates))
        random_epochs_per_candidate(config.epochs, random_candidates)   # checked here
        return network, config
    if derivation is None and DEFAULT_DERIVATION[method] not in space.derivation_rules:
        # A space without per-node rules (the recurrent one) derives DATA's
        # cell by its own EGS draw.
        derivation = "sample"
    egs = {}
    if method in EGS_METHODS:
        egs = dict(egs_gradient=config.egs_gradient, edge_combine=config.edge_combine)
    settings = method_settings(method, num_samples=shape.num_samples, search_mode=search_mode,
                               derivation=derivation, darts_order=darts_order,
                               scope=shape.egs_scope,
                               arch_weight_decay=config.arch_weight_decay,
                               initial_temperature=config.initial_temperature,
                               final_temperature=config.final_temperature, **egs)
    # A method without EGS codes records none (a shared config's are not its).
    config = dataclasses.replace(config, **{"egs_gradient": None, "edge_combine": None,
                                            **settings.config})
    return settings.network, dataclasses.replace(
        config, derivation=space.canonical_rule(config.derivation))


def build_search(method, num_outputs, input_shape, config, shape, *, space="darts_cnn",
                 strategy=None, task=None, **method_args):
    """Builds the (supernet, config) pair a method searches with (see
    resolve_method for `config`, `shape` and `method_args`).  The space
    builds the body; `task` (a datanas.tasks Task), when given, puts its
    head on it (``Task.build_head``), else the space's default head of
    `num_outputs` outputs does.  The model is created in `strategy.scope()`
    when a strategy is given."""
    space = get_space(space) if isinstance(space, str) else space
    network, config = resolve_method(method, config, shape, space=space, **method_args)

    def make():
        head = task.build_head() if task is not None else None
        return space.build_supernet(shape, num_outputs=num_outputs, input_shape=input_shape,
                                    temperature=config.initial_temperature, seed=config.seed,
                                    head=head, **network)

    if strategy is None:
        return make(), config
    with strategy.scope():
        return make(), config


def run_method_search(method, model, inputs, config, model_dir, *, space="darts_cnn",
                      random_candidates=8, strategy=None, checkpoint_every_steps=200, verbose=1,
                      metadata=None, bn_recalibration_batches=0, task=None, callbacks=None):
    """Runs the search of `method` (see build_search) and returns its SearchResult.

    `task`: a datanas.tasks Task (default: classification over the model's
    outputs).  `callbacks`: Keras callbacks told each epoch's record
    (``on_epoch_end``); for random search, each candidate's epochs."""
    metadata = {**(metadata or {}), "method": method}
    if method == "random":
        return run_random_search(model, inputs, config, model_dir, candidates=random_candidates,
                                 space=space, task=task, strategy=strategy, verbose=verbose,
                                 metadata=metadata, checkpoint_every_steps=checkpoint_every_steps,
                                 callbacks=callbacks)
    return run_search(model, inputs, config, model_dir, space=space, strategy=strategy,
                      verbose=verbose, metadata=metadata, task=task,
                      checkpoint_every_steps=checkpoint_every_steps,
                      bn_recalibration_batches=bn_recalibration_batches, callbacks=callbacks)
