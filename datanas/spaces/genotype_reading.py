"""Reading a genotype file, shared by every space's genotype format: the
one error type of a bad genotype and the file (or run directory) reader."""

from __future__ import annotations

import os

__all__ = ["GenotypeError", "read_genotype_text"]


class GenotypeError(ValueError):
    """A genotype (object, dict, JSON text or file) is malformed.

    The message is a single sentence-like line that names, when known, the
    file, the cell, the node and pair, the offending value and what is allowed.
    """


def read_genotype_text(path: str | os.PathLike) -> tuple[str, str]:
    """(text, path read) of a genotype JSON file, or of a search run
    directory's ``genotype.json``; GenotypeError (one line naming the path)
    when it is missing or unreadable.  Every space's loader reads through it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        candidate = os.path.join(path, "genotype.json")
        if not os.path.isfile(candidate):
            raise GenotypeError(f"directory {path!r} holds no genotype.json; give a genotype "
                                "JSON file or the directory of a finished search run")
        path = candidate
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return handle.read(), path
    except FileNotFoundError as exc:
        raise GenotypeError(f"genotype file {path!r} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise GenotypeError(f"genotype file {path!r} is not valid UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise GenotypeError(f"genotype file {path!r} cannot be read: {exc}") from exc
