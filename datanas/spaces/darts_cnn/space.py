"""The DARTS convolutional cell space behind the SearchSpace interface.

Settings (``SupernetShape``): the paper's CIFAR search is 8 cells, C=16,
4 intermediate nodes, the 8 DARTS ops.  ``egs_scope`` None means the
method's default (see ``datanas.searching.methods``).
"""

import dataclasses

import numpy as np

from datanas.spaces import register_space
from datanas.spaces.base import SearchSpace
from datanas.spaces.node_rules import distribution_entropies, selection_probabilities
from datanas.spaces.darts_cnn import costs, derivation
from datanas.spaces.darts_cnn.genotype import CELL_KINDS, CONV_PRIMITIVES, Genotype
from datanas.spaces.darts_cnn.networks import NetworkCIFAR, NetworkImageNet
from datanas.spaces.darts_cnn.random_cells import sample_uniform_genotype
from datanas.spaces.darts_cnn.segmentation import NetworkDeepLabV3
from datanas.spaces.darts_cnn.supernet import SearchNetwork
from datanas.spaces.resource_aware import (DEFAULT_COST_LAMBDA, check_cost_settings,
                                           resolve_cost_lambda)

__all__ = ["SupernetShape", "DartsCNNSpace", "DARTS_CNN", "DEFAULT_COST_LAMBDA"]

#: Draws of the "sample" derivation looking for a genotype within the budgets.
BUDGET_TRIES = 50


@dataclasses.dataclass(frozen=True)
class SupernetShape:
    """Size of the search network (the paper's CIFAR search: 8 cells, C=16)."""
    num_cells: int = 8
    init_channels: int = 16
    num_nodes: int = 4
    num_samples: int = 4
    egs_scope: str | None = None
    primitives: tuple = CONV_PRIMITIVES
    # How sparse edges skip unselected ops: "cond" or "examples" (mixed_edge.py);
    # None means "cond" and keeps identities of runs made before this setting.
    sparse_skip: str | None = None
    # Resource-aware sampling (estimators/efficiency.py): the op cost ("params",
    # "madds", "latency"; None = off) and lam (None = DEFAULT_COST_LAMBDA).
    # None keeps the identities of runs made before these settings.
    cost: str | None = None
    cost_lambda: float | None = None
    # Budgets on the final network (final_layers cells, final_init_channels
    # channels; None = 20 and 36, the train_cifar defaults): parameters /
    # multiply-adds of one image.  None = no budget; budget_weight None = 1.
    max_params: int | None = None
    max_madds: int | None = None
    final_layers: int | None = None
    final_init_channels: int | None = None
    budget_weight: float | None = None

    def __post_init__(self):
        check_cost_settings(self.cost, self.cost_lambda)

        for name in ("max_params", "max_madds"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.budget_weight is not None and not self.budget_weight > 0:
            raise ValueError(f"budget_weight must be > 0, got {self.budget_weight!r}.")

    @property
    def final_network(self):
        """(cells, channels) of the final network budgets refer to."""
        return self.final_layers or 20, self.final_init_channels or 36

    @property
    def budgets(self):
        """{metric: limit} of the set budgets."""
        return {metric: limit for metric, limit in (("params", self.max_params),
                                                    ("madds", self.max_madds)) if limit}

    @property
    def resolved_cost_lambda(self):
        """lam of the supernet: 1.0 (learned distribution only) without a cost."""
        return resolve_cost_lambda(self.cost, self.cost_lambda)


class DartsCNNSpace(SearchSpace):
    """Normal and reduction cells of DARTS/DATA (paper Section 4.1)."""

    name = "darts_cnn"
    derivation_rules = derivation.DERIVATION_RULES
    rule_aliases = derivation.RULE_ALIASES
    settings_class = SupernetShape

    def build_supernet(self, settings, *, num_outputs, input_shape, weighting, mode,
                       num_samples, scope, temperature, seed, egs_gradient="full",
                       edge_combine="mean", head=None):
        model = SearchNetwork(None if head is not None else num_outputs, head=head,
                              init_channels=settings.init_channels,
                              num_cells=settings.num_cells, num_nodes=settings.num_nodes,
                              egs_scope=scope, primitives=settings.primitives,
                              num_samples=num_samples, weighting=weighting, mode=mode,
                              temperature=temperature, seed=seed,
                              skip=settings.sparse_skip or "cond",
                              cost_lambda=settings.resolved_cost_lambda,
                              egs_gradient=egs_gradient, edge_combine=edge_combine)
        model.build((None,) + tuple(input_shape))
        model.cost_metric, model.cost_tables = None, None
        if settings.cost not in (None, "none"):
            model.cost_metric = settings.cost
            model.cost_tables = costs.cost_tables(model, settings.cost)
            if model.cost_lambda < 1.0:
                model.set_efficiency_credit(costs.scope_credit(model.cost_tables, scope))
        if settings.budgets:
            model.set_budgets(self._final_budgets(settings, num_outputs, input_shape),
                              settings.budget_weight or 1.0)
            layers, channels = settings.final_network
            model.budget_network = {"layers": layers, "init_channels": channels}
        return model

    @staticmethod
    def _final_budgets(settings, num_outputs, input_shape):
        budgets = {}
        reference = sample_uniform_genotype(np.random.default_rng(0), settings.num_nodes,
                                            settings.primitives)
        layers, channels = settings.final_network
        for metric, limit in settings.budgets.items():
            tables = costs.final_cost_tables(settings.primitives, settings.num_nodes, layers,
                                             channels, tuple(input_shape), metric)
            fixed = costs.final_fixed_cost(
                reference, tables, settings.primitives, num_classes=num_outputs,
                num_cells=layers, init_channels=channels, image_shape=tuple(input_shape),
                metric=metric)
            if fixed >= limit:
                raise ValueError(
                    f"max_{metric}={limit} is not above what the final network "
                    f"({layers} cells, C={channels}) costs "
                    f"without any cell op: {fixed:.0f} (stem, cell preprocessing, classifier); "
                    f"raise it or budget a smaller final network (final_layers, "
                    f"final_init_channels).")
            budgets[metric] = (limit, fixed, tables)
        return budgets

    def derive(self, supernet, rule, seed):
        """The genotype `rule` derives; with budgets, a sampling rule
        resamples (seeds seed + 1, ...; at most BUDGET_TRIES draws) until the
        final network fits, else keeps the cheapest draw.  What happened is
        recorded in ``supernet.budget_derivations[rule]`` (result files)."""
        def draw(draw_seed):
            return derivation.derive_genotype(
                derivation.logits_of(supernet), rule=rule, scope=supernet.egs_scope,
                num_samples=supernet.num_samples, primitives=supernet.primitives,
                seed=draw_seed)

        budgets = getattr(supernet, "budgets", None)
        if not budgets:
            return draw(seed)
        tries = BUDGET_TRIES if rule in ("sample", "node_sample") else 1
        best = None
        for attempt in range(tries):
            genotype = draw(seed + attempt)
            final = self.final_costs(supernet, genotype)
            excess = max(final[m] / budgets[m][0] for m in budgets)
            if best is None or excess < best[0]:
                best = (excess, genotype, final, attempt + 1)
            if excess <= 1.0:
                break
        excess, genotype, final, used = best
        if not hasattr(supernet, "budget_derivations"):
            supernet.budget_derivations = {}
        supernet.budget_derivations[rule] = {
            "within_budget": excess <= 1.0, "draws": used if excess <= 1.0 else tries,
            "final_network": final, "limits": {m: budgets[m][0] for m in budgets}}
        return genotype

    @staticmethod
    def final_costs(supernet, genotype):
        """{metric: cost} of the final network of `genotype` per budget."""
        return {metric: fixed + costs.genotype_cost(genotype, tables, supernet.primitives)
                for metric, (_, fixed, tables) in supernet.budgets.items()}

    def child_weights(self, supernet, genotype):
        combine = supernet.edge_combine if supernet.estimator.binary_codes else "sum"
        return derivation.genotype_to_weights(genotype, supernet.primitives, supernet.num_nodes,
                                              edge_combine=combine)

    def random_genotype(self, supernet, rng):
        return sample_uniform_genotype(rng, supernet.num_nodes, supernet.primitives)

    def probabilities(self, supernet):
        return derivation.architecture_probabilities(
            derivation.logits_of(supernet), supernet.egs_scope, supernet.num_samples,
            supernet.primitives)

    def selection_entropy(self, supernet):
        # One distribution per node (node scope: over all its (input, op)
        # pairs) or per edge (edge scope: over the edge's ops).
        entropies = []
        for variable in supernet.architecture_variables:
            probs = selection_probabilities(np.asarray(variable.numpy(), np.float64),
                                             supernet.egs_scope)
            entropies.extend(distribution_entropies(probs, supernet.egs_scope))
        return float(np.mean(entropies))

    def describe(self, genotype):
        return {"skip_connects": {kind: genotype.num_skip_connects(kind) for kind in CELL_KINDS},
                "op_counts": genotype.op_counts(),
                "pairs_per_node": {kind: float(np.mean([len(n) for n in genotype.cell(kind)]))
                                   for kind in CELL_KINDS}}

    def resource_summary(self, supernet, genotype):
        summary = {}
        if getattr(supernet, "budgets", None):
            summary["budget"] = {
                "limits": {m: v[0] for m, v in supernet.budgets.items()},
                "final_network": {**supernet.budget_network,
                                  **self.final_costs(supernet, genotype)},
                "expected_final_cost": {m: float(supernet.expected_final_cost(m))
                                        for m in supernet.budgets},
                "derivations": getattr(supernet, "budget_derivations", {})}
        tables = getattr(supernet, "cost_tables", None)
        if tables is None:
            return summary
        expected = costs.expected_child_cost(derivation.logits_of(supernet), tables,
                                             supernet.egs_scope, supernet.num_samples)
        derived = costs.genotype_cost(genotype, tables, supernet.primitives)
        return {**summary, "cost": {
            "metric": supernet.cost_metric, "cost_lambda": supernet.cost_lambda,
            "expected_child_cost": expected, "derived_child_cost": derived,
            "note": "sums over the supernet's cells of the chosen ops' costs (stem, "
                    "preprocessing and classifier excluded)"}}

    def probability_rows(self, kind, num_nodes):
        """'node 2 <- c_{k-2}', ...: nodes 2.. with inputs c_{k-2}, c_{k-1} and
        the earlier nodes."""
        labels = []
        for position in range(num_nodes):
            names = ["c_{k-2}", "c_{k-1}"] + [f"node {i}" for i in range(2, position + 2)]
            labels += [f"node {position + 2} <- {name}" for name in names]
        return labels

    def genotype_from_dict(self, data):
        return Genotype.from_dict(data)

    #: The final network of each training setting.
    final_networks = {"cifar": NetworkCIFAR, "imagenet": NetworkImageNet,
                      "segmentation": NetworkDeepLabV3}

    def final_network(self, genotype, *, setting="cifar", **kwargs):
        """NetworkCIFAR, NetworkImageNet or NetworkDeepLabV3 (`setting`) of `genotype`."""
        if setting not in self.final_networks:
            raise ValueError(f"setting must be one of {', '.join(self.final_networks)}; "
                             f"got {setting!r}.")
        return self.final_networks[setting](genotype, **kwargs)


DARTS_CNN = register_space(DartsCNNSpace())
