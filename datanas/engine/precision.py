"""Moved to ``datanas.core.precision``; this name stays for older imports."""

from datanas.core.precision import *  # noqa: F401,F403
from datanas.core.precision import __all__  # noqa: F401
