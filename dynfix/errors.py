"""The one exception type for user-facing errors.

Anything the user can cause (a bad file, an unsupported layer, a model that does not fit a
board) raises :class:`DynfixError` with a message that names the problem. The CLI prints it
on one line and exits non-zero; tracebacks are reserved for bugs in dynfix itself.
"""

from __future__ import annotations


class DynfixError(Exception):
    """A user error with a message fit to print as is."""
