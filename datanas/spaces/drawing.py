"""Pictures of found cells: a genotype as plain text, as Graphviz DOT, or
rendered by Graphviz's ``dot`` binary (PNG, SVG, PDF).

Works for any genotype that says what it draws: ``cell_kinds`` (the names
of its cells) and ``cell_graph(kind)`` (a :class:`CellGraph`: input nodes,
computed nodes with their (op, input) pairs, the output).  The DARTS
convolutional pair (``Genotype``) and the recurrent cell
(``RecurrentGenotype``) do; so can a new space's genotype.

DATA's EGS may keep several ops on one edge; in DOT each (op, input) pair is
its own edge, so several ops between the same two nodes are parallel,
separately labelled edges.  The text names every (op, input) of every node.

Only the rendering to an image needs Graphviz (the ``dot`` executable, run
as a subprocess; no Python binding is needed).  Without it,
:class:`GraphvizNotFoundError` says how to install it; text and DOT output
still work.  Standard library only.
"""

import dataclasses
import os
import shutil
import subprocess

__all__ = ["CellGraph", "OUTPUT_FORMATS", "IMAGE_FORMATS", "INSTALL_HINT", "GraphvizNotFoundError",
           "cell_kinds", "genotype_text", "genotype_dot", "dot_available", "render_dot", "output_format",
           "draw_genotype"]

#: Image formats rendered by ``dot``.
IMAGE_FORMATS = ("png", "svg", "pdf")
#: Every output format of :func:`draw_genotype` (the file extension picks it).
OUTPUT_FORMATS = IMAGE_FORMATS + ("txt", "dot")

INSTALL_HINT = ("install Graphviz: 'apt-get install graphviz' (Debian/Ubuntu), "
                "'brew install graphviz' (macOS) or 'conda install -c conda-forge graphviz'")

# Edge colours by op (Graphviz colour names); unknown ops are drawn black.
_OP_COLOURS = {
    "max_pool_3x3": "firebrick", "avg_pool_3x3": "darkorange", "skip_connect": "gray40",
    "sep_conv_3x3": "royalblue", "sep_conv_5x5": "navy", "dil_conv_3x3": "forestgreen",
    "dil_conv_5x5": "darkgreen",
    "tanh": "royalblue", "relu": "firebrick", "sigmoid": "darkorange", "identity": "gray40",
}


class GraphvizNotFoundError(RuntimeError):
    """The ``dot`` executable of Graphviz is not on PATH."""


@dataclasses.dataclass(frozen=True)
class CellGraph:
    """One cell as a graph, what a genotype's ``cell_graph(kind)`` returns.

    inputs: [(id, label)]; nodes: [(id, label, combine, [(op, source_id)])]
    in order (combine "sum", "mean", ... or "highway": drawn as a fixed node,
    not counted); output: (label, combine, [source ids]).  Ids are local to
    the cell.  text_labels: {id: label} used instead in the text form;
    node_word: what a node's pairs hold ("op", "activation").
    """
    inputs: list
    nodes: list
    output: tuple
    text_labels: dict = dataclasses.field(default_factory=dict)
    node_word: str = "op"


def _check_genotype(genotype):
    if not (hasattr(genotype, "cell_kinds") and hasattr(genotype, "cell_graph")):
        raise TypeError(f"expected a genotype with cell_kinds and cell_graph(kind), got "
                        f"{type(genotype).__name__}")
    return genotype


def cell_kinds(genotype):
    """The cell kinds a genotype holds, e.g. ("normal", "reduce") or ("recurrent",)."""
    return tuple(_check_genotype(genotype).cell_kinds)


def _select_kinds(genotype, kinds):
    available = cell_kinds(genotype)
    if kinds is None:
        return available
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    bad = [k for k in kinds if k not in available]
    if bad or not kinds:
        raise ValueError(f"cell kind(s) {bad or list(kinds)} not in this genotype; "
                         f"allowed: {', '.join(available)}")
    return kinds


# --------------------------------------------------------------------------
# the cell as a graph: input nodes, computed nodes, labelled edges, output
# --------------------------------------------------------------------------


def _cell_graph(genotype, kind):
    graph = genotype.cell_graph(kind)
    return graph.inputs, graph.nodes, graph.output


def _labels(inputs, nodes):
    labels = dict(inputs)
    labels.update({node_id: label for node_id, label, _, _ in nodes})
    return labels


def _cell_text(genotype, kind):
    graph = genotype.cell_graph(kind)
    inputs, nodes, (out_label, out_combine, out_sources) = graph.inputs, graph.nodes, graph.output
    labels = _labels(inputs, nodes)
    labels.update(graph.text_labels)
    node_word = graph.node_word
    counted = sum(1 for _, _, combine, _ in nodes if combine != "highway")
    lines = [f"{kind} cell: inputs {', '.join(label for _, label in inputs)}; "
             f"{counted} nodes; output {out_label} = "
             f"{out_combine}({', '.join(labels[s] for s in out_sources)})"]
    for node_id, label, combine, pairs in nodes:
        if combine == "highway":
            lines.append(f"  {label} = tanh highway of ({', '.join(labels[s] for _, s in pairs)})")
            continue
        terms = [f"{op}({labels[source]})" for op, source in pairs]
        name = labels[node_id]
        joined = " + ".join(terms) if combine == "sum" else ", ".join(terms)
        lines.append(f"  {name} = {combine} of {len(pairs)} ({node_word}, input) pair"
                     f"{'s' if len(pairs) != 1 else ''}: {joined}")
    return lines


def genotype_text(genotype, kinds=None):
    """Plain text naming every (op, input) pair of every node of every cell."""
    lines = []
    for kind in _select_kinds(genotype, kinds):
        lines.extend(_cell_text(genotype, kind))
    return "\n".join(lines) + "\n"


def _quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cell_dot(genotype, kind, clustered):
    inputs, nodes, (out_label, out_combine, out_sources) = _cell_graph(genotype, kind)

    def name(node_id):
        return _quote(f"{kind}_{node_id}")

    indent = "    " if clustered else "  "
    lines = []
    if clustered:
        lines += [f"  subgraph {_quote('cluster_' + kind)} {{",
                  f"{indent}label={_quote(kind + ' cell')}; fontsize=20; color=gray70;"]
    for node_id, label in inputs:
        lines.append(f"{indent}{name(node_id)} [label={_quote(label)}, shape=box, "
                     "style=\"rounded,filled\", fillcolor=palegreen];")
    for node_id, label, _, _ in nodes:
        lines.append(f"{indent}{name(node_id)} [label={_quote(label)}, shape=circle, "
                     "style=filled, fillcolor=lightblue];")
    lines.append(f"{indent}{name('out')} [label={_quote(out_label + ' (' + out_combine + ')')},"
                 " shape=box, style=\"rounded,filled\", fillcolor=khaki];")
    for node_id, _, _, pairs in nodes:
        for op, source in pairs:
            colour = _OP_COLOURS.get(op, "black")
            lines.append(f"{indent}{name(source)} -> {name(node_id)} [label={_quote(op)}, "
                         f"color={colour}, fontcolor={colour}];")
    for source in out_sources:
        lines.append(f"{indent}{name(source)} -> {name('out')} [style=dashed, color=gray50];")
    if clustered:
        lines.append("  }")
    return lines


def genotype_dot(genotype, kinds=None):
    """Graphviz DOT text of the genotype's cells (one cluster per cell when
    several are drawn); one edge per (op, input) pair, so several ops on one
    edge become parallel labelled edges."""
    kinds = _select_kinds(genotype, kinds)
    lines = ["digraph cells {", "  rankdir=LR; fontname=Helvetica;",
             "  node [fontname=Helvetica, fontsize=14];",
             "  edge [fontname=Helvetica, fontsize=11];"]
    # Graphviz's left-to-right layout stacks later clusters above earlier ones:
    # emitted in reverse, the first kind (the normal cell) is drawn on top.
    for kind in reversed(kinds):
        lines.extend(_cell_dot(genotype, kind, clustered=len(kinds) > 1))
    if len(kinds) == 1:
        lines.insert(2, f"  label={_quote(kinds[0] + ' cell')}; labelloc=t; fontsize=20;")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------


def dot_available():
    """Whether Graphviz's ``dot`` executable is on PATH."""
    return shutil.which("dot") is not None


def render_dot(dot_text, image_format):
    """The bytes of `dot_text` rendered by ``dot`` as `image_format` (png, svg, pdf).

    Raises GraphvizNotFoundError (with the install hint) without ``dot``, and
    RuntimeError naming dot's own message when it fails.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format {image_format!r} is not supported; allowed: "
                         f"{', '.join(IMAGE_FORMATS)}")
    executable = shutil.which("dot")
    if executable is None:
        raise GraphvizNotFoundError(f"the Graphviz program 'dot' is not on PATH, so cells "
                                    f"cannot be drawn as images; {INSTALL_HINT}. Text output "
                                    "(.txt, .dot) works without it.")
    proc = subprocess.run([executable, f"-T{image_format}"], input=dot_text.encode("utf-8"),
                          capture_output=True, timeout=120, check=False)
    if proc.returncode != 0 or not proc.stdout:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"Graphviz 'dot -T{image_format}' failed (exit {proc.returncode}): "
                           + (message[0] if message else "no output"))
    return proc.stdout


def output_format(path):
    """The format an output path asks for, by its extension; ValueError naming
    the allowed extensions."""
    extension = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if extension not in OUTPUT_FORMATS:
        raise ValueError(f"output {os.fspath(path)!r} has "
                         + (f"extension '.{extension}'" if extension else "no extension")
                         + "; allowed: " + ", ".join("." + f for f in OUTPUT_FORMATS))
    return extension


def draw_genotype(genotype, path, kinds=None):
    """Writes the genotype's cells to `path`; the extension picks the format
    (.png, .svg, .pdf via Graphviz; .txt text; .dot DOT source).  Nothing is
    written when rendering fails.  Returns the path."""
    path = os.fspath(path)
    fmt = output_format(path)
    _check_genotype(genotype)
    if fmt == "txt":
        data = genotype_text(genotype, kinds).encode("utf-8")
    elif fmt == "dot":
        data = genotype_dot(genotype, kinds).encode("utf-8")
    else:
        data = render_dot(genotype_dot(genotype, kinds), fmt)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path
