"""Draw a found cell: convolutional (normal + reduction) or recurrent.

    python -m trainers.visualize --genotype=runs/search_fmnist --output=cell.png
    python -m trainers.visualize --genotype=docs/lm/genotype.json --output=rnn_cell.svg
    python -m trainers.visualize --genotype=genotype.json --output=cell.txt --cell=normal

--genotype is a genotype JSON file or a search run directory (its derived
genotype.json).  The extension of --output picks the format: .png, .svg, .pdf
(rendered by Graphviz's `dot`), .txt (every (op, input) of every node) or
.dot (the Graphviz source).

An existing --output is refused unless --overwrite is given.  Inside a run
directory (one holding run_identity.json) only the run whose cell is drawn
may receive pictures, and even --overwrite replaces there only a picture
this tool drew (it marks its files: a PNG text chunk, an SVG, DOT or PDF
comment; a .txt is recognised by its cell listing), never a run file such
as flagfile.txt.
"""

import os
import re
import struct
import sys
import tempfile
import zlib

from absl import app
from absl import flags as absl_flags

absl_flags.DEFINE_string("genotype", None, "Genotype JSON file (convolutional or recurrent) or "
                         "a search run directory holding genotype.json.")
absl_flags.DEFINE_string("output", None, "File to write: .png, .svg, .pdf, .txt or .dot.")
absl_flags.DEFINE_enum("cell", "all", ["all", "normal", "reduce", "recurrent"],
                       "Which cell to draw; 'all' draws every cell of the genotype.")
absl_flags.DEFINE_bool("overwrite", False, "Replace an existing --output file (inside a run "
                       "directory only a picture this tool drew of that run's cell).")
absl_flags.mark_flags_as_required(["genotype", "output"])

FLAGS = absl_flags.FLAGS

#: What this tool writes into every picture, so that --overwrite can tell its
#: own pictures from a run's files.
MARK = "drawn by datanas trainers.visualize"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_KEYWORD = b"Software"
# The lines of genotype_text: a cell's header, and its indented nodes.
_TEXT_HEADER = re.compile(r"\w+ cell: inputs .*; \d+ nodes; output .*")
_TEXT_NODE = re.compile(r"  \S+ = .*")


def _png_chunks(data):
    """[(type, body)] of a PNG's chunks; None when `data` is not a whole PNG."""
    if not data.startswith(_PNG_MAGIC):
        return None
    chunks, at = [], len(_PNG_MAGIC)
    while at + 12 <= len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        chunks.append((data[at + 4:at + 8], data[at + 8:at + 8 + length]))
        at += 12 + length
    return chunks if at == len(data) else None


def mark_picture(fmt, data):
    """The bytes of a picture of format `fmt` with this tool's mark (MARK) in it."""
    mark = MARK.encode("ascii")
    if fmt == "png":   # a tEXt chunk right after the header chunk
        chunk = _PNG_KEYWORD + b"\0" + mark
        end = len(_PNG_MAGIC) + 12 + struct.unpack(">I", data[8:12])[0]
        return (data[:end] + struct.pack(">I", len(chunk)) + b"tEXt" + chunk
                + struct.pack(">I", zlib.crc32(b"tEXt" + chunk)) + data[end:])
    if fmt == "svg":   # an XML comment after the XML declaration
        first, newline, rest = data.partition(b"\n")
        return first + newline + b"<!-- " + mark + b" -->\n" + rest
    if fmt == "pdf":   # a comment line before the trailer's startxref (no offset moves)
        at = data.rfind(b"startxref")
        return data[:at] + b"%" + mark + b"\n" + data[at:] if at > 0 else data
    if fmt == "dot":
        return data + b"// " + mark + b"\n"
    return data        # txt: recognised by its cell listing


def drawn_by_this_tool(path):
    """Whether the file at `path` is a picture this tool wrote (see mark_picture)."""
    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    if fmt not in ("png", "svg", "pdf", "dot", "txt"):
        return False
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    mark = MARK.encode("ascii")
    if fmt == "png":
        return (b"tEXt", _PNG_KEYWORD + b"\0" + mark) in (_png_chunks(data) or [])
    if fmt == "svg":
        return b"<!-- " + mark + b" -->" in data[:4096]
    if fmt == "pdf":
        return data.startswith(b"%PDF") and b"\n%" + mark + b"\nstartxref" in data[-4096:]
    if fmt == "dot":
        return data.startswith(b"digraph") and data.endswith(b"// " + mark + b"\n")
    if fmt == "txt":
        try:
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            return False
        return bool(lines) and _TEXT_HEADER.fullmatch(lines[0]) is not None \
            and all(_TEXT_HEADER.fullmatch(line) or _TEXT_NODE.fullmatch(line) for line in lines)
    return False


def output_refusal(output, genotype, overwrite):
    """Why --output may not be written (one line), or None.

    An existing path is refused without `overwrite`; a path inside a run
    directory other than the drawn genotype's run is refused; inside the
    genotype's own run an existing file is replaced only when this tool drew
    it (never a run file such as flagfile.txt).
    """
    from datanas.engine.run_identity import run_root  # pylint: disable=import-outside-toplevel
    path = os.path.realpath(output)
    source = os.path.realpath(genotype)
    root = run_root(path)
    own = run_root(source, include_self=os.path.isdir(source))
    if root is not None and root != own:
        return (f"--output={output} lies inside the run directory {root}, not the run of "
                f"--genotype={genotype}; write the picture outside other runs' directories.")
    if os.path.isdir(path):
        return (f"--output={output} is a directory; give a file path (.png, .svg, .pdf, .txt "
                "or .dot).")
    if not os.path.lexists(output):
        return None
    if root is not None and not drawn_by_this_tool(path):
        return (f"--output={output} is a file of the run directory {root} that this tool did "
                "not draw; it is never replaced (--overwrite included): choose a new file name.")
    if not overwrite:
        return f"--output={output} exists; pass --overwrite to replace it, or choose a new path."
    return None


def _write_marked(genotype, output, kinds):
    """Draws into a scratch directory, marks the picture and moves it to
    `output` in one step: a failed drawing leaves `output` as it was."""
    from datanas.spaces.drawing import draw_genotype, output_format   # pylint: disable=import-outside-toplevel
    fmt = output_format(output)
    with tempfile.TemporaryDirectory(prefix="visualize-") as scratch:
        drawn = draw_genotype(genotype, os.path.join(scratch, f"cell.{fmt}"), kinds=kinds)
        with open(drawn, "rb") as handle:
            data = mark_picture(fmt, handle.read())
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".visualize-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return output


def main(argv):
    if len(argv) > 1:
        sys.exit(f"visualize: error: unexpected arguments {argv[1:]}; use --genotype and "
                 "--output.")
    # Checked before anything is drawn or written.
    refusal = output_refusal(FLAGS.output, FLAGS.genotype, FLAGS.overwrite)
    if refusal:
        sys.exit(f"visualize: error: {refusal}")
    # pylint: disable=import-outside-toplevel
    from datanas.spaces.drawing import GraphvizNotFoundError, output_format
    from datanas.spaces.genotype_files import load_any_genotype
    from datanas.spaces.darts_cnn.genotype import GenotypeError

    try:
        output_format(FLAGS.output)   # a bad extension is refused before anything is read
        genotype = load_any_genotype(FLAGS.genotype)
        path = _write_marked(genotype, FLAGS.output,
                             kinds=None if FLAGS.cell == "all" else FLAGS.cell)
    except (GenotypeError, ValueError, GraphvizNotFoundError, RuntimeError, OSError) as error:
        sys.exit(f"visualize: error: {error}")
    print(f"visualize: wrote {path}", flush=True)


if __name__ == "__main__":
    app.run(main)
