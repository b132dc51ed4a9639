"""Uniform random cells of the DARTS space (the random-search baseline).

Every intermediate node takes ``inputs_per_node`` distinct earlier nodes,
each through an op drawn uniformly from the non-'none' candidates, as in the
random baselines of DARTS (Liu et al. 2019) and Li & Talwalkar (2019).
"""

from datanas.spaces.darts_cnn.genotype import CELL_KINDS, Genotype, check_primitives

__all__ = ["sample_uniform_genotype"]


def sample_uniform_genotype(rng, num_nodes, primitives, inputs_per_node=2):
    """One cell pair drawn uniformly from the DARTS space over `primitives`."""
    ops = [p for p in check_primitives(primitives) if p != "none"]
    cells = {}
    for kind in CELL_KINDS:
        nodes = []
        for node in range(num_nodes):
            sources = rng.choice(node + 2, size=min(inputs_per_node, node + 2), replace=False)
            nodes.append([(ops[int(rng.integers(len(ops)))], int(s)) for s in sorted(sources)])
        cells[kind] = nodes
    concat = tuple(range(2, num_nodes + 2))
    return Genotype(normal=cells["normal"], normal_concat=concat,
                    reduce=cells["reduce"], reduce_concat=concat)
