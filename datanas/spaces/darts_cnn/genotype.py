"""Genotypes: the discrete convolutional cell pair produced by an architecture search.

A genotype describes two cells of a DARTS-style search space: a ``normal`` cell
(keeps the spatial resolution) and a ``reduce`` cell (halves it).

Every cell has two input nodes and ``N >= 1`` intermediate nodes:

* node ``0`` is the output of cell ``k-2``, node ``1`` the output of cell ``k-1``;
* intermediate node ``j`` (0-based) carries the index ``j + 2`` and equals the
  SUM of one or more ``(op, input_index)`` pairs, where ``input_index`` refers
  to an earlier node, i.e. lies in ``[0, j + 2)``.

DARTS keeps exactly two pairs per node.  DATA's Ensemble Gumbel-Softmax can
select several operations on one edge and several edges into one node, so a
node here may hold any positive number of pairs, and the same input may appear
with different ops.  Repeating an identical ``(op, input)`` pair is rejected
because it carries no information.

The cell output is the channel-wise concatenation of the nodes listed in
``normal_concat`` / ``reduce_concat`` (indices in ``[2, N + 2)``, unique,
non-empty; stored sorted).

On disk a genotype is a small, human-readable JSON document::

    {
      "normal": [[["sep_conv_3x3", 0], ["skip_connect", 1]], ...],
      "normal_concat": [2, 3, 4, 5],
      "reduce": [...],
      "reduce_concat": [2, 3, 4, 5]
    }

This module depends only on the Python standard library.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from datanas.spaces.drawing import CellGraph
from datanas.spaces.genotype_reading import GenotypeError, read_genotype_text

__all__ = [
    "CONV_PRIMITIVES",
    "GENOTYPE_OPS",
    "check_primitives",
    "CELL_KINDS",
    "GenotypeError",
    "read_genotype_text",
    "Genotype",
    "save_genotype",
    "load_genotype",
    "DARTS_V2",
]

#: Candidate operations of the convolutional search space, in search order.
#: The position of an op in this tuple is its index ``k`` in an EGS code.
CONV_PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

#: Ops that may appear in a derived genotype ('none' edges are dropped).
GENOTYPE_OPS = CONV_PRIMITIVES[1:]

#: The two cell kinds of a genotype.
CELL_KINDS = ("normal", "reduce")

#: Number of input nodes of every cell (outputs of cells k-2 and k-1).
NUM_INPUT_NODES = 2

_KEYS = ("normal", "normal_concat", "reduce", "reduce_concat")


def check_primitives(primitives) -> tuple:
    """The candidate-op list of a search, checked: known, distinct, not only 'none'."""
    primitives = tuple(primitives)
    unknown = [p for p in primitives if p not in CONV_PRIMITIVES]
    if unknown:
        raise ValueError(f"unknown primitive(s) {unknown}; allowed: {', '.join(CONV_PRIMITIVES)}.")
    if len(set(primitives)) != len(primitives) or not [p for p in primitives if p != "none"]:
        raise ValueError(f"primitives {list(primitives)} must be distinct and include an op "
                         "other than 'none'.")
    return primitives


# --------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------


def _where(source: str | None, kind: str | None = None, node: int | None = None,
           pair: int | None = None, field: str | None = None) -> str:
    """Build the location prefix of an error message."""
    parts = []
    if source is not None:
        parts.append(f"genotype file {str(source)!r}")
    else:
        parts.append("genotype")
    if field is not None:
        parts.append(f"{field!r}")
    elif kind is not None:
        parts.append(f"{kind} cell")
    if node is not None:
        parts.append(f"node {node}")
    if pair is not None:
        parts.append(f"pair {pair}")
    return ", ".join(parts)


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_int(value: Any) -> bool:
    # bool is a subclass of int but is never a meaningful node index.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_op(op: Any, where: str) -> str:
    if not isinstance(op, str):
        raise GenotypeError(
            f"{where}: op must be a string, got {op!r} ({_type_name(op)}); "
            f"allowed ops: {', '.join(GENOTYPE_OPS)}"
        )
    if op == "none":
        raise GenotypeError(
            f"{where}: op 'none' is not allowed in a genotype: 'none' (zero) "
            "edges contribute nothing and are dropped when the genotype is "
            f"derived; remove this pair (allowed ops: {', '.join(GENOTYPE_OPS)})"
        )
    if op not in GENOTYPE_OPS:
        close = difflib.get_close_matches(op, GENOTYPE_OPS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise GenotypeError(
            f"{where}: unknown op {op!r}{hint}; allowed ops: "
            f"{', '.join(GENOTYPE_OPS)}"
        )
    return op


def _check_cell(cell: Any, kind: str, source: str | None) -> tuple:
    """Validate one cell and return it as a tuple of tuples of pairs."""
    if isinstance(cell, (str, bytes)) or not isinstance(cell, (list, tuple)):
        raise GenotypeError(
            f"{_where(source, kind)}: a cell must be a list of nodes (each a "
            f"list of [op, input] pairs), got {cell!r} ({_type_name(cell)})"
        )
    if len(cell) == 0:
        raise GenotypeError(
            f"{_where(source, kind)}: the cell is empty ([]); it needs at "
            "least one intermediate node"
        )
    nodes = []
    for j, node in enumerate(cell):
        node_id = j + NUM_INPUT_NODES
        where_node = _where(source, kind, node_id)
        if isinstance(node, (str, bytes)) or not isinstance(node, (list, tuple)):
            raise GenotypeError(
                f"{where_node}: a node must be a list of [op, input] pairs, "
                f"got {node!r} ({_type_name(node)})"
            )
        if len(node) == 0:
            raise GenotypeError(
                f"{where_node}: the node is empty ([]); every intermediate "
                "node needs at least one [op, input] pair"
            )
        pairs = []
        seen: dict[tuple, int] = {}
        for p, pair in enumerate(node, start=1):
            where_pair = _where(source, kind, node_id, p)
            if (isinstance(pair, (str, bytes))
                    or not isinstance(pair, (list, tuple)) or len(pair) != 2):
                raise GenotypeError(
                    f"{where_pair}: a pair must be a 2-element list "
                    f"[op, input], got {pair!r}"
                )
            op, index = pair
            op = _check_op(op, where_pair)
            if not _is_int(index):
                raise GenotypeError(
                    f"{where_pair}: input index must be an integer, got "
                    f"{index!r} ({_type_name(index)}); allowed inputs for "
                    f"node {node_id}: 0..{node_id - 1}"
                )
            if not 0 <= index < node_id:
                if index == node_id:
                    why = "points to the node itself"
                elif index > node_id:
                    why = "points forward to a later node"
                else:
                    why = "is negative"
                raise GenotypeError(
                    f"{where_pair}: input index {index} {why}; allowed inputs "
                    f"for node {node_id} are 0..{node_id - 1} (earlier nodes "
                    "only)"
                )
            key = (op, index)
            if key in seen:
                raise GenotypeError(
                    f"{where_pair}: duplicate pair [{op!r}, {index}] (same as "
                    f"pair {seen[key]}); each (op, input) pair may appear at "
                    "most once per node"
                )
            seen[key] = p
            pairs.append(key)
        nodes.append(tuple(pairs))
    return tuple(nodes)


def _check_concat(concat: Any, kind: str, num_nodes: int,
                  source: str | None) -> tuple:
    field = f"{kind}_concat"
    where = _where(source, field=field)
    allowed = f"{NUM_INPUT_NODES}..{num_nodes + NUM_INPUT_NODES - 1}"
    if isinstance(concat, (str, bytes)) or not isinstance(concat, (list, tuple)):
        raise GenotypeError(
            f"{where}: must be a list of node indices in {allowed}, got "
            f"{concat!r} ({_type_name(concat)})"
        )
    if len(concat) == 0:
        raise GenotypeError(
            f"{where}: the list is empty ([]); it needs at least one node "
            f"index in {allowed}"
        )
    seen = set()
    for value in concat:
        if not _is_int(value):
            raise GenotypeError(
                f"{where}: node index must be an integer, got {value!r} "
                f"({_type_name(value)}); allowed: {allowed}"
            )
        if not NUM_INPUT_NODES <= value < num_nodes + NUM_INPUT_NODES:
            raise GenotypeError(
                f"{where}: node index {value} is out of range; allowed "
                f"intermediate nodes of the {num_nodes}-node {kind} cell: "
                f"{allowed}"
            )
        if value in seen:
            raise GenotypeError(
                f"{where}: node index {value} is listed more than once; "
                "indices must be unique"
            )
        seen.add(value)
    return tuple(sorted(seen))


def _validate(normal: Any, normal_concat: Any, reduce: Any, reduce_concat: Any,
              source: str | None) -> tuple:
    normal_t = _check_cell(normal, "normal", source)
    normal_concat_t = _check_concat(normal_concat, "normal", len(normal_t), source)
    reduce_t = _check_cell(reduce, "reduce", source)
    reduce_concat_t = _check_concat(reduce_concat, "reduce", len(reduce_t), source)
    return normal_t, normal_concat_t, reduce_t, reduce_concat_t


def _check_kind(kind: Any) -> str:
    if kind not in CELL_KINDS:
        raise GenotypeError(
            f"unknown cell kind {kind!r}; allowed: {', '.join(CELL_KINDS)}"
        )
    return kind


# --------------------------------------------------------------------------
# Genotype
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Genotype:
    """An immutable, always-valid normal/reduce cell pair.

    ``normal`` and ``reduce`` are tuples (one entry per intermediate node) of
    tuples of ``(op, input_index)`` pairs; the ``*_concat`` fields are sorted
    tuples of node indices.  Lists are accepted and converted to tuples.
    """

    normal: tuple
    normal_concat: tuple
    reduce: tuple
    reduce_concat: tuple

    def __post_init__(self) -> None:
        values = _validate(self.normal, self.normal_concat, self.reduce,
                           self.reduce_concat, None)
        for name, value in zip(_KEYS, values):
            object.__setattr__(self, name, value)

    # ---- (de)serialisation ------------------------------------------------

    def to_dict(self) -> dict:
        """Plain JSON-compatible dict (lists, not tuples)."""
        def cell_to_list(cell: tuple) -> list:
            return [[[op, index] for op, index in node] for node in cell]

        return {
            "normal": cell_to_list(self.normal),
            "normal_concat": list(self.normal_concat),
            "reduce": cell_to_list(self.reduce),
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None) -> "Genotype":
        """Build a genotype from a dict as produced by :meth:`to_dict`.

        Everything is validated; ``source`` (e.g. a file name) is included in
        error messages.
        """
        if not isinstance(data, Mapping):
            raise GenotypeError(
                f"{_where(source)}: top level must be a JSON object with keys "
                f"{', '.join(_KEYS)}; got {_type_name(data)}"
            )
        missing = [k for k in _KEYS if k not in data]
        extra = [k for k in data if k not in _KEYS]
        if missing or extra:
            problems = []
            if missing:
                problems.append("missing key(s) " + ", ".join(repr(k) for k in missing))
            if extra:
                problems.append("unknown key(s) " + ", ".join(repr(k) for k in extra))
            raise GenotypeError(
                f"{_where(source)}: {'; '.join(problems)}; expected exactly "
                f"the keys {', '.join(_KEYS)}"
            )
        values = _validate(data["normal"], data["normal_concat"],
                           data["reduce"], data["reduce_concat"], source)
        return cls(*values)

    def to_json(self) -> str:
        """Human-readable JSON: 2-space indentation, one node per line.

        The result parses to exactly :meth:`to_dict`.
        """
        data = self.to_dict()
        lines = ["{"]
        for i, key in enumerate(_KEYS):
            comma = "," if i < len(_KEYS) - 1 else ""
            value = data[key]
            if key.endswith("_concat"):
                lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
            else:
                lines.append(f"  {json.dumps(key)}: [")
                for j, node in enumerate(value):
                    node_comma = "," if j < len(value) - 1 else ""
                    lines.append(f"    {json.dumps(node)}{node_comma}")
                lines.append(f"  ]{comma}")
        lines.append("}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *,
                  source: str | None = None) -> "Genotype":
        """Parse and validate a JSON document."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(
                f"{_where(source)}: invalid JSON at line {exc.lineno}, column "
                f"{exc.colno}: {exc.msg}"
            ) from exc
        except (TypeError, UnicodeDecodeError) as exc:
            raise GenotypeError(f"{_where(source)}: cannot decode JSON: {exc}") from exc
        return cls.from_dict(data, source=source)

    # ---- accessors ----------------------------------------------------------

    def cell(self, kind: str) -> tuple:
        """The node list of the ``"normal"`` or ``"reduce"`` cell."""
        return getattr(self, _check_kind(kind))

    def concat(self, kind: str) -> tuple:
        """The concatenated node indices of the ``"normal"`` or ``"reduce"`` cell."""
        return getattr(self, f"{_check_kind(kind)}_concat")

    def op_counts(self, kind: str | None = None) -> dict[str, int]:
        """Number of occurrences of each op in one cell, or in both if ``kind`` is None.

        Only ops that occur are included, ordered as in :data:`GENOTYPE_OPS`.
        """
        kinds = CELL_KINDS if kind is None else (_check_kind(kind),)
        counts = {op: 0 for op in GENOTYPE_OPS}
        for k in kinds:
            for node in self.cell(k):
                for op, _ in node:
                    counts[op] += 1
        return {op: n for op, n in counts.items() if n}

    def num_skip_connects(self, kind: str | None = "normal") -> int:
        """Number of ``skip_connect`` pairs (a symptom of skip-connect collapse)."""
        return self.op_counts(kind).get("skip_connect", 0)

    #: The cells a drawing shows (``datanas.spaces.drawing``).
    cell_kinds = CELL_KINDS

    def cell_graph(self, kind: str) -> CellGraph:
        """One cell as a graph: inputs c_{k-2} (node 0) and c_{k-1} (node 1),
        nodes 2.. (each the SUM of its (op, input) pairs), output the concat
        of the listed nodes."""
        nodes = [(j + NUM_INPUT_NODES, str(j + NUM_INPUT_NODES), "sum", list(pairs))
                 for j, pairs in enumerate(self.cell(kind))]
        return CellGraph(inputs=[(0, "c_{k-2}"), (1, "c_{k-1}")], nodes=nodes,
                         output=("c_{k}", "concat", list(self.concat(kind))),
                         text_labels={node_id: f"node {node_id}" for node_id, *_ in nodes})

    def summary(self) -> str:
        """Short multi-line human-readable description."""
        lines = []
        for kind in CELL_KINDS:
            cell = self.cell(kind)
            concat = ", ".join(str(i) for i in self.concat(kind))
            lines.append(f"{kind} cell ({len(cell)} nodes, output = concat[{concat}]):")
            for j, node in enumerate(cell):
                terms = " + ".join(f"{op}({index})" for op, index in node)
                lines.append(f"  node {j + NUM_INPUT_NODES} <- {terms}")
            counts = ", ".join(f"{op} x{n}" for op, n in self.op_counts(kind).items())
            lines.append(f"  ops: {counts}")
        return "\n".join(lines)


# --------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------


def save_genotype(genotype: Genotype, path: str | os.PathLike) -> None:
    """Write ``genotype`` as JSON to ``path`` atomically.

    The text goes to a temporary file in the target directory which then
    replaces ``path`` with :func:`os.replace`, so readers never see a partial
    file.  Missing parent directories are created.
    """
    if not isinstance(genotype, Genotype):
        raise TypeError(f"save_genotype expects a Genotype, got {_type_name(genotype)}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    text = genotype.to_json()
    fd, tmp_path = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise


def load_genotype(path: str | os.PathLike) -> Genotype:
    """Read and validate a genotype JSON file.

    ``path`` may also be a search run directory (its ``genotype.json`` is read).
    """
    text, path = read_genotype_text(path)
    return Genotype.from_json(text, source=path)


# --------------------------------------------------------------------------
# reference genotype
# --------------------------------------------------------------------------

# The cell pair reported by DARTS (Liu, Simonyan & Yang, ICLR 2019) for its
# second-order search on CIFAR-10, as listed under the name DARTS_V2 in the
# authors' released code.  Handy as a known-good example and for tests.
DARTS_V2 = Genotype(
    normal=(
        (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_3x3", 1), ("skip_connect", 0)),
        (("skip_connect", 0), ("dil_conv_3x3", 2)),
    ),
    normal_concat=(2, 3, 4, 5),
    reduce=(
        (("max_pool_3x3", 0), ("max_pool_3x3", 1)),
        (("skip_connect", 2), ("max_pool_3x3", 1)),
        (("max_pool_3x3", 0), ("skip_connect", 2)),
        (("skip_connect", 2), ("max_pool_3x3", 1)),
    ),
    reduce_concat=(2, 3, 4, 5),
)
