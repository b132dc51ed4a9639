"""Recurrent genotypes: the discrete cell found by a language-model search.

A recurrent cell (DARTS/ENAS form, DATA paper Section 4.2) has an initial
node ``s_0`` computed from the input ``x_t`` and the previous hidden state
``h_{t-1}``, followed by ``N`` intermediate nodes ``s_1 .. s_N``.  Node
``s_{i+1}`` (list position ``i``) combines one or more ``(activation,
input)`` pairs with ``input`` in ``0..i``; each pair is a highway step
``s_in + c * (act(h) - s_in)`` with ``[c, h] = s_in W_{i+1}``, the node's one
linear map (DARTS); the node averages each input's pairs, then its inputs
(``cells.py``).  DARTS keeps one pair per node; DATA's EGS may keep several.  The cell output
``h_t`` is the mean of the nodes listed in ``concat`` (indices ``1..N``).

On disk (JSON)::

    {"recurrent": [[["tanh", 0]], [["relu", 1], ["sigmoid", 0]], ...],
     "concat": [1, 2, ...]}

Errors are one line naming the file, node and pair, the bad value and what
is allowed (same rules as the convolutional genotypes).  Standard library only.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from typing import Any

from datanas.spaces.drawing import CellGraph
from datanas.spaces.genotype_reading import GenotypeError, read_genotype_text

__all__ = ["RNN_PRIMITIVES", "RNN_GENOTYPE_OPS", "RecurrentGenotype", "check_rnn_primitives",
           "load_recurrent_genotype", "DARTS_RNN", "GenotypeError"]

#: Candidate activations (DARTS' recurrent PRIMITIVES order); index k of a code.
RNN_PRIMITIVES = ("none", "tanh", "relu", "sigmoid", "identity")
#: Activations allowed in a derived genotype.
RNN_GENOTYPE_OPS = RNN_PRIMITIVES[1:]
_KEYS = ("recurrent", "concat")


def check_rnn_primitives(primitives) -> tuple:
    """The candidate activations of a search: known, distinct, not only 'none'."""
    primitives = tuple(primitives)
    unknown = [p for p in primitives if p not in RNN_PRIMITIVES]
    if unknown:
        raise ValueError(f"unknown recurrent primitive(s) {unknown}; allowed: "
                         f"{', '.join(RNN_PRIMITIVES)}.")
    if len(set(primitives)) != len(primitives) or not [p for p in primitives if p != "none"]:
        raise ValueError(f"primitives {list(primitives)} must be distinct and include an "
                         "activation other than 'none'.")
    return primitives


def _where(source, node=None, pair=None, field=None):
    parts = [f"genotype file {str(source)!r}" if source is not None else "recurrent genotype"]
    if field is not None:
        parts.append(repr(field))
    if node is not None:
        parts.append(f"node {node}")
    if pair is not None:
        parts.append(f"pair {pair}")
    return ", ".join(parts)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_activation(name, where):
    if name == "none":
        raise GenotypeError(f"{where}: activation 'none' is not allowed in a genotype (a zero "
                            f"pair contributes nothing); allowed: {', '.join(RNN_GENOTYPE_OPS)}")
    if not isinstance(name, str) or name not in RNN_GENOTYPE_OPS:
        close = difflib.get_close_matches(name, RNN_GENOTYPE_OPS, n=1) if isinstance(
            name, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise GenotypeError(f"{where}: unknown activation {name!r}{hint}; allowed: "
                            f"{', '.join(RNN_GENOTYPE_OPS)}")
    return name


def _check_nodes(nodes, source):
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, (list, tuple)) or not nodes:
        raise GenotypeError(f"{_where(source, field='recurrent')}: must be a non-empty list of "
                            f"nodes (each a list of [activation, input] pairs), got {nodes!r}")
    checked = []
    for position, node in enumerate(nodes):
        node_id = position + 1
        where = _where(source, node_id)
        if isinstance(node, (str, bytes)) or not isinstance(node, (list, tuple)) or not node:
            raise GenotypeError(f"{where}: a node must be a non-empty list of [activation, "
                                f"input] pairs, got {node!r}")
        pairs = []
        for number, pair in enumerate(node, start=1):
            where_pair = _where(source, node_id, number)
            if isinstance(pair, (str, bytes)) or not isinstance(pair, (list, tuple)) \
                    or len(pair) != 2:
                raise GenotypeError(f"{where_pair}: a pair must be [activation, input], "
                                    f"got {pair!r}")
            name, index = pair
            name = _check_activation(name, where_pair)
            if not _is_int(index) or not 0 <= index <= position:
                raise GenotypeError(f"{where_pair}: input {index!r} is not allowed; node "
                                    f"{node_id} may take inputs 0..{position}")
            if (name, index) in pairs:
                raise GenotypeError(f"{where_pair}: pair [{name!r}, {index}] is repeated; "
                                    "each (activation, input) pair may appear once")
            pairs.append((name, index))
        checked.append(tuple(pairs))
    return tuple(checked)


def _check_concat(concat, num_nodes, source):
    where = _where(source, field="concat")
    allowed = f"1..{num_nodes}"
    if isinstance(concat, (str, bytes)) or not isinstance(concat, (list, tuple)) or not concat:
        raise GenotypeError(f"{where}: must be a non-empty list of node indices in {allowed}, "
                            f"got {concat!r}")
    for value in concat:
        if not _is_int(value) or not 1 <= value <= num_nodes:
            raise GenotypeError(f"{where}: node index {value!r} is not allowed; allowed: "
                                f"{allowed}")
    if len(set(concat)) != len(concat):
        raise GenotypeError(f"{where}: indices must be unique, got {list(concat)}")
    return tuple(sorted(concat))


@dataclasses.dataclass(frozen=True)
class RecurrentGenotype:
    """An immutable, always-valid recurrent cell (see the module docstring)."""

    recurrent: tuple
    concat: tuple

    def __post_init__(self):
        nodes = _check_nodes(self.recurrent, None)
        object.__setattr__(self, "recurrent", nodes)
        object.__setattr__(self, "concat", _check_concat(self.concat, len(nodes), None))

    @property
    def num_nodes(self):
        """Intermediate nodes after s_0."""
        return len(self.recurrent)

    #: The cells a drawing shows (``datanas.spaces.drawing``).
    cell_kinds = ("recurrent",)

    def cell_graph(self, kind="recurrent"):
        """The cell as a graph: inputs x_t and h_{t-1}, s0 their tanh highway,
        nodes s1.. (each the MEAN of its (activation, input) pairs), output h_t
        the mean of the listed nodes."""
        if kind != "recurrent":
            raise ValueError(f"a recurrent genotype has only the 'recurrent' cell; got {kind!r}")
        nodes = [(0, "s0", "highway", [("tanh highway", "x"), ("tanh highway", "h")])]
        for position, pairs in enumerate(self.recurrent):
            nodes.append((position + 1, f"s{position + 1}", "mean", list(pairs)))
        return CellGraph(inputs=[("x", "x_t"), ("h", "h_{t-1}")], nodes=nodes,
                         output=("h_t", "mean", list(self.concat)), node_word="activation")

    def to_dict(self):
        return {"recurrent": [[[name, index] for name, index in node]
                              for node in self.recurrent],
                "concat": list(self.concat)}

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> "RecurrentGenotype":
        if not isinstance(data, Mapping) or set(data) != set(_KEYS):
            got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise GenotypeError(f"{_where(source)}: expected a JSON object with exactly the keys "
                                f"{', '.join(_KEYS)}; got {got}")
        nodes = _check_nodes(data["recurrent"], source)
        return cls(nodes, _check_concat(data["concat"], len(nodes), source))

    def to_json(self):
        nodes = ",\n".join(f"    {json.dumps(node)}" for node in self.to_dict()["recurrent"])
        return (f'{{\n  "recurrent": [\n{nodes}\n  ],\n'
                f'  "concat": {json.dumps(list(self.concat))}\n}}\n')

    @classmethod
    def from_json(cls, text, *, source=None):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"{_where(source)}: invalid JSON at line {exc.lineno}, column "
                                f"{exc.colno}: {exc.msg}") from exc
        return cls.from_dict(data, source=source)

    def op_counts(self):
        """Occurrences of each activation (only those that occur)."""
        counts = {name: 0 for name in RNN_GENOTYPE_OPS}
        for node in self.recurrent:
            for name, _ in node:
                counts[name] += 1
        return {name: n for name, n in counts.items() if n}

    def edges(self):
        """Distinct (node, input) edges: the inputs each node's map multiplies."""
        return sorted({(position + 1, index) for position, node in enumerate(self.recurrent)
                       for _, index in node})

    def summary(self):
        lines = [f"recurrent cell ({self.num_nodes} nodes after s0, output = mean"
                 f"[{', '.join(map(str, self.concat))}]):",
                 "  node 0 <- tanh highway of (x_t, h_t-1)"]
        for position, node in enumerate(self.recurrent):
            lines.append(f"  node {position + 1} <- "
                         + " + ".join(f"{name}({index})" for name, index in node))
        lines.append("  activations: " + ", ".join(f"{k} x{v}"
                                                   for k, v in self.op_counts().items()))
        return "\n".join(lines)


def load_recurrent_genotype(path) -> RecurrentGenotype:
    """Reads and validates a genotype JSON file (or a search run's directory)."""
    text, path = read_genotype_text(path)
    return RecurrentGenotype.from_json(text, source=path)


# The recurrent cell DARTS reports for PTB, as listed under the name DARTS in
# the authors' rnn/genotypes.py: 8 nodes, one pair each, output = mean(1..8).
DARTS_RNN = RecurrentGenotype(
    recurrent=((("relu", 0),), (("relu", 1),), (("tanh", 2),), (("relu", 3),),
               (("relu", 4),), (("identity", 1),), (("relu", 5),), (("relu", 1),)),
    concat=(1, 2, 3, 4, 5, 6, 7, 8))
