"""Search spaces, selected by name (``--space``).

Each space lives in its own sub-package and registers an instance of its
``SearchSpace`` (see ``base.py``) here.  Adding a space: a new folder with a
``space.py`` that calls ``register_space``, and one import below.
"""

from datanas.core.registry import Registry
from datanas.spaces.base import SearchSpace

__all__ = ["SearchSpace", "register_space", "get_space", "space_names",
           "derivation_rule_names", "result_genotype_files"]

_SPACES = Registry("unknown search space {name!r}; known: {known}.")


def register_space(space):
    """Registers a SearchSpace instance under `space.name`."""
    if not isinstance(space, SearchSpace):
        raise TypeError(f"expected a SearchSpace, got {type(space).__name__}.")
    return _SPACES.register(space.name, space)


def space_names():
    """Names of the registered spaces, in registration order (``--space``)."""
    return _SPACES.names()


def derivation_rule_names(spaces=None):
    """Every derivation rule of the given spaces (default: all registered),
    current names first, then their earlier names; in registration order
    without repeats (the ``--derivation`` choices)."""
    spaces = [get_space(name) for name in (space_names() if spaces is None else spaces)]
    names = [rule for space in spaces for rule in space.derivation_rules]
    names += [alias for space in spaces for alias in space.rule_aliases]
    return tuple(dict.fromkeys(names))


def result_genotype_files(spaces=None):
    """The per-rule genotype files a search of these spaces writes
    (``genotype_<rule>.json``; current rule names only)."""
    spaces = [get_space(name) for name in (space_names() if spaces is None else spaces)]
    return tuple(dict.fromkeys(f"genotype_{rule}.json" for space in spaces
                               for rule in space.derivation_rules))


def get_space(name):
    """The registered space called `name`; ValueError naming the known ones."""
    return _SPACES.get(name)


# Registration of the built-in spaces.
from datanas.spaces.darts_cnn import space as _darts_cnn  # noqa: E402,F401  pylint: disable=wrong-import-position
from datanas.spaces.darts_rnn import space as _darts_rnn  # noqa: E402,F401  pylint: disable=wrong-import-position
