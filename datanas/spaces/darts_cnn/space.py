"""The DARTS convolutional cell space behind the SearchSpace interface.

Settings (``SupernetShape``): the paper's CIFAR search is 8 cells, C=16,
4 intermediate nodes, the 8 DARTS ops.  ``egs_scope`` None means the
method's default (see ``datanas.search.methods``).
"""

import dataclasses

import numpy as np

from datanas.spaces import register_space
from datanas.spaces.base import SearchSpace
from datanas.spaces.node_rules import selection_probabilities
from datanas.spaces.darts_cnn import derivation
from datanas.spaces.darts_cnn.genotype import CELL_KINDS, CONV_PRIMITIVES, Genotype
from datanas.spaces.darts_cnn.networks import NetworkCIFAR, NetworkImageNet
from datanas.spaces.darts_cnn.random_cells import sample_uniform_genotype
from datanas.spaces.darts_cnn.supernet import SearchNetwork

__all__ = ["SupernetShape", "DartsCNNSpace", "DARTS_CNN"]


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


class DartsCNNSpace(SearchSpace):
    """Normal and reduction cells of DARTS/DATA (paper Section 4.1)."""

    name = "darts_cnn"
    derivation_rules = derivation.DERIVATION_RULES
    rule_aliases = derivation.RULE_ALIASES
    settings_class = SupernetShape

    def build_supernet(self, settings, *, num_outputs, input_shape, weighting, mode,
                       num_samples, scope, temperature, seed):
        model = SearchNetwork(num_outputs, init_channels=settings.init_channels,
                              num_cells=settings.num_cells, num_nodes=settings.num_nodes,
                              egs_scope=scope, primitives=settings.primitives,
                              num_samples=num_samples, weighting=weighting, mode=mode,
                              temperature=temperature, seed=seed,
                              skip=settings.sparse_skip or "cond")
        model.build((None,) + tuple(input_shape))
        return model

    def derive(self, supernet, rule, seed):
        return derivation.derive_genotype(
            derivation.logits_of(supernet), rule=rule, scope=supernet.egs_scope,
            num_samples=supernet.num_samples, primitives=supernet.primitives, seed=seed)

    def child_weights(self, supernet, genotype):
        return derivation.genotype_to_weights(genotype, supernet.primitives, supernet.num_nodes)

    def random_genotype(self, supernet, rng):
        return sample_uniform_genotype(rng, supernet.num_nodes, supernet.primitives)

    def probabilities(self, supernet):
        return derivation.architecture_probabilities(
            derivation.logits_of(supernet), supernet.egs_scope, supernet.num_samples,
            supernet.primitives)

    def selection_entropy(self, supernet):
        entropies = []
        for variable in supernet.architecture_variables:
            probs = selection_probabilities(np.asarray(variable.numpy(), np.float64),
                                             supernet.egs_scope)
            entropies.append(float(-(probs * np.log(probs + 1e-12)).sum(axis=-1).mean()))
        return float(np.mean(entropies))

    def describe(self, genotype):
        return {"skip_connects": {kind: genotype.num_skip_connects(kind) for kind in CELL_KINDS},
                "op_counts": genotype.op_counts(),
                "pairs_per_node": {kind: float(np.mean([len(n) for n in genotype.cell(kind)]))
                                   for kind in CELL_KINDS}}

    def genotype_from_dict(self, data):
        return Genotype.from_dict(data)

    def final_network(self, genotype, *, setting="cifar", **kwargs):
        if setting == "imagenet":
            return NetworkImageNet(genotype, **kwargs)
        return NetworkCIFAR(genotype, **kwargs)


DARTS_CNN = register_space(DartsCNNSpace())
