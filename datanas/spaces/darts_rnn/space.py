"""The DARTS/DATA recurrent cell space behind the SearchSpace interface.

Settings (``RecurrentShape``): DATA's PTB search uses one recurrent cell of
12 intermediate nodes with the activations none/tanh/relu/sigmoid/identity
and M = 4 or 7 (paper Section 4.2); the sizes and dropouts the paper leaves
to DARTS come from DARTS' recurrent search (embedding = hidden = 300).
Derivation rules: ``sample`` (an EGS draw, DATA), ``inclusion`` (pairs with
inclusion probability >= 0.5), ``darts`` (DARTS' recurrent rule: per node
the input with the largest non-none probability and its best activation).

Resource-aware search (``cost``, ``cost_lambda``; as in the conv space): the
supernet samples from the mixture of its learned distribution and an
efficiency credit from ``costs.py``; derivation (every rule), the
probabilities file and the costs in the result read that mixture.  Budgets
on the final network (``max_params``, ``max_madds``) exist for the conv
space only.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from datanas.estimators import EnsembleGumbelSoftmax
from datanas.spaces import register_space
from datanas.spaces.base import SearchSpace
from datanas.spaces.darts_rnn import costs
from datanas.spaces.darts_rnn.genotype import (RNN_PRIMITIVES, RecurrentGenotype,
                                              check_rnn_primitives)
from datanas.spaces.darts_rnn.language_model import RNNLanguageModel, RNNSearchModel
from datanas.spaces.node_rules import (check_finite, distribution_entropies,
                                       inclusion_probabilities, node_code,
                                       pairs_from_code, selection_probabilities, top_edge_pairs)
from datanas.spaces.resource_aware import check_cost_settings, resolve_cost_lambda

__all__ = ["RecurrentShape", "DartsRNNSpace", "DARTS_RNN_SPACE"]


@dataclasses.dataclass(frozen=True)
class RecurrentShape:
    """Size of the recurrent search model (DATA: 12 nodes; DARTS: 300 units)."""
    num_nodes: int = 12
    hidden_size: int = 300
    num_samples: int = 4
    egs_scope: str | None = None
    primitives: tuple = RNN_PRIMITIVES
    dropout: float = 0.75
    dropout_h: float = 0.25
    dropout_x: float = 0.75
    dropout_i: float = 0.2
    # Rows of the carried hidden state: the largest global batch of any stream.
    state_rows: int = 256
    # Resource-aware sampling (costs.py): the cost of a choice ("madds",
    # "latency"; None = off; "params" is refused: no choice changes them) and lam (None = DEFAULT_COST_LAMBDA).
    # None keeps the identities of runs made before these settings.
    cost: str | None = None
    cost_lambda: float | None = None

    def __post_init__(self):
        check_rnn_primitives(self.primitives)
        check_cost_settings(self.cost, self.cost_lambda)
        costs.check_recurrent_cost(self.cost)
        for name in ("num_nodes", "hidden_size", "num_samples", "state_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")

    @property
    def resolved_cost_lambda(self):
        """lam of the supernet: 1.0 (learned distribution only) without a cost."""
        return resolve_cost_lambda(self.cost, self.cost_lambda)


def _learned_logits(supernet):
    return [np.asarray(v.numpy(), np.float64) for v in supernet.arch_logits]


def _logits(supernet):
    """[array [i + 1, K]]: the logits the supernet samples from (its learned
    logits, or log p of resource-aware sampling), so a derived genotype is a
    sample of what was searched."""
    return [np.asarray(tf.reshape(supernet.sampling_logits(position), v.shape).numpy(),
                       np.float64)
            for position, v in enumerate(supernet.arch_logits)]


class DartsRNNSpace(SearchSpace):
    """One recurrent cell for language modelling (paper Section 4.2)."""

    name = "darts_rnn"
    input_kind = "tokens"
    derivation_rules = ("sample", "inclusion", "darts")
    rule_aliases = {"most_likely": "inclusion"}
    settings_class = RecurrentShape

    def build_supernet(self, settings, *, num_outputs, input_shape=None, weighting, mode,
                       num_samples, scope, temperature, seed, egs_gradient="full",
                       edge_combine="mean", head=None):
        del input_shape  # token windows of any length
        if head is not None:
            raise ValueError("the darts_rnn language model ends in its own decoder (tied to its "
                             f"embedding); it takes no separate head, got {head.name!r}.")
        model = RNNSearchModel(
            num_outputs, hidden_size=settings.hidden_size, num_nodes=settings.num_nodes,
            primitives=tuple(settings.primitives), num_samples=num_samples, egs_scope=scope,
            weighting=weighting, mode=mode, temperature=temperature, dropout=settings.dropout,
            dropout_h=settings.dropout_h, dropout_x=settings.dropout_x,
            dropout_i=settings.dropout_i, state_rows=settings.state_rows, seed=seed,
            cost_lambda=settings.resolved_cost_lambda, egs_gradient=egs_gradient,
            edge_combine=edge_combine)
        model.cost_metric, model.cost_terms, model.cost_tables = None, None, None
        if settings.cost not in (None, "none"):
            model.cost_metric = settings.cost
            model.cost_terms = costs.cell_costs(settings.hidden_size, model.primitives,
                                                settings.cost)
            model.cost_tables = costs.cost_tables(model.cost_terms, model.primitives,
                                                  model.num_nodes)
            if model.cost_lambda < 1.0:
                model.set_efficiency_credit(costs.scope_credit(model.cost_tables, scope))
        return model

    def derive(self, supernet, rule, seed):
        rule = self.canonical_rule(rule)
        logits = _logits(supernet)
        check_finite({f"node {i + 1}": values for i, values in enumerate(logits)})
        estimator = EnsembleGumbelSoftmax(num_samples=supernet.num_samples)
        nodes = []
        for position, node_logits in enumerate(logits):
            probs = selection_probabilities(node_logits, supernet.egs_scope)
            if rule == "darts":
                nodes.append(top_edge_pairs(probs, supernet.primitives, edges=1))
            else:
                code = node_code(estimator, node_logits, supernet.egs_scope, rule,
                                 [seed, position])
                nodes.append(pairs_from_code(code, probs, supernet.primitives))
        return RecurrentGenotype(nodes, tuple(range(1, len(nodes) + 1)))

    def child_weights(self, supernet, genotype):
        if genotype.num_nodes != supernet.num_nodes:
            raise ValueError(f"the genotype has {genotype.num_nodes} nodes but the search model "
                             f"has {supernet.num_nodes}.")
        if tuple(genotype.concat) != tuple(range(1, supernet.num_nodes + 1)):
            raise ValueError("the search model averages all nodes; a genotype with concat "
                             f"{list(genotype.concat)} cannot be computed inside it.")
        index = {name: k for k, name in enumerate(supernet.primitives)}
        weights = []
        for position, pairs in enumerate(genotype.recurrent):
            matrix = np.zeros((position + 1, len(supernet.primitives)), np.float32)
            for name, source in pairs:
                if name not in index:
                    raise ValueError(f"genotype activation {name!r} is not among the search "
                                     f"model's primitives ({', '.join(supernet.primitives)}).")
                matrix[source, index[name]] = 1.0
            # As the supernet weighs a sampled code (per-edge mean or sum).
            weights.append(supernet.combine(tf.constant(matrix)))
        return weights

    def random_genotype(self, supernet, rng):
        """One pair per node: a uniform input and a uniform non-none activation
        (the random baseline of DARTS' recurrent space)."""
        names = [p for p in supernet.primitives if p != "none"]
        nodes = [[(names[int(rng.integers(len(names)))], int(rng.integers(position + 1)))]
                 for position in range(supernet.num_nodes)]
        return RecurrentGenotype(nodes, tuple(range(1, supernet.num_nodes + 1)))

    def probabilities(self, supernet):
        out = {"scope": supernet.egs_scope, "num_samples": supernet.num_samples,
               "primitives": list(supernet.primitives), "recurrent": []}
        for position, node_logits in enumerate(_logits(supernet)):
            probs = selection_probabilities(node_logits, supernet.egs_scope)
            out["recurrent"].append({
                "node": position + 1, "p": np.round(probs, 6).tolist(),
                "inclusion": np.round(inclusion_probabilities(probs, supernet.num_samples),
                                      6).tolist()})
        return out

    def selection_entropy(self, supernet):
        """Of the learned distribution (the logits), as in the conv space."""
        entropies = []
        for node_logits in _learned_logits(supernet):
            probs = selection_probabilities(node_logits, supernet.egs_scope)
            entropies.extend(distribution_entropies(probs, supernet.egs_scope))
        return float(np.mean(entropies))

    def describe(self, genotype):
        return {"op_counts": genotype.op_counts(),
                "identity_pairs": genotype.op_counts().get("identity", 0),
                "pairs_per_node": float(np.mean([len(n) for n in genotype.recurrent])),
                "linear_maps": genotype.num_nodes,
                "node_inputs": len(genotype.edges())}

    def resource_summary(self, supernet, genotype):
        terms = getattr(supernet, "cost_terms", None)
        if terms is None:
            return {}
        expected = costs.expected_child_cost(_logits(supernet), terms, supernet.primitives,
                                             supernet.egs_scope, supernet.num_samples)
        return {"cost": {
            "metric": supernet.cost_metric, "cost_lambda": supernet.cost_lambda,
            "expected_child_cost": expected,
            "derived_child_cost": costs.genotype_cost(genotype, terms),
            "edge_map_cost": terms.map, "activation_costs": dict(terms.own),
            "note": "the cell's choices: the product of each input with its node's map, "
                    "per (node, input) edge with at least one pair, plus each pair's own "
                    "highway term (W_0, the first node, the output mean, embedding and "
                    "decoder excluded)"}}

    def probability_rows(self, kind, num_nodes):
        """'s1 <- s0', 's2 <- s0', ...: nodes s1.. with inputs s0 and the earlier nodes."""
        return [f"s{position + 1} <- s{source}" for position in range(num_nodes)
                for source in range(position + 1)]

    def genotype_from_dict(self, data):
        return RecurrentGenotype.from_dict(data)

    def final_network(self, genotype, **kwargs):
        return RNNLanguageModel(genotype, **kwargs)


DARTS_RNN_SPACE = register_space(DartsRNNSpace())
