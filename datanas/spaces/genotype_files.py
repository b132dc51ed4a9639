"""Reading a genotype file of any space: the space is recognised by the file's keys.

A convolutional genotype has the keys ``normal``, ``normal_concat``,
``reduce`` and ``reduce_concat``; a recurrent one ``recurrent`` and
``concat`` (see the two ``genotype.py`` modules).  Tools that accept either
(the cell drawing, ``trainers.visualize``) read files through
:func:`load_any_genotype`.  Standard library only.
"""

import json

from datanas.spaces.darts_cnn.genotype import Genotype, GenotypeError, read_genotype_text
from datanas.spaces.darts_rnn.genotype import RecurrentGenotype

__all__ = ["load_any_genotype", "genotype_from_any_dict"]


def genotype_from_any_dict(data, *, source=None):
    """A validated Genotype or RecurrentGenotype, chosen by the keys of `data`."""
    if isinstance(data, dict) and "recurrent" in data:
        return RecurrentGenotype.from_dict(data, source=source)
    return Genotype.from_dict(data, source=source)


def load_any_genotype(path):
    """The genotype in a JSON file, or in a search run directory's genotype.json.

    Raises GenotypeError (one line naming the path) when the file or the
    directory's genotype.json is missing or malformed.
    """
    text, path = read_genotype_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenotypeError(f"genotype file {path!r}: invalid JSON at line {exc.lineno}, "
                            f"column {exc.colno}: {exc.msg}") from exc
    return genotype_from_any_dict(data, source=path)
