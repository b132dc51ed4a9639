"""Named entries of one kind (search spaces, estimators), in registration order."""

__all__ = ["Registry"]


class Registry:
    """A name -> entry table whose unknown names fail in one line.

    Args:
      unknown: the ValueError message for an unknown name, a format string
        with ``{name}`` (the name asked for) and ``{known}`` (the registered
        names, comma-separated).
    """

    def __init__(self, unknown):
        self._unknown = unknown
        self._entries = {}

    def register(self, name, entry):
        """Registers `entry` as `name` (a later registration replaces it); returns it."""
        self._entries[name] = entry
        return entry

    def names(self):
        """The registered names, in registration order."""
        return tuple(self._entries)

    def get(self, name):
        """The entry registered as `name`; ValueError naming the registered ones."""
        if name not in self._entries:
            raise ValueError(self._unknown.format(name=name, known=", ".join(self._entries)))
        return self._entries[name]
