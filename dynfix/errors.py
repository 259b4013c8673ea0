"""The one exception type for user-facing errors.

Anything the user can cause (a bad file, an unsupported layer, a model that does not fit a
board) raises :class:`DynfixError` with a message that names the problem. The CLI prints it
on one line and exits non-zero; tracebacks are reserved for bugs in dynfix itself.
"""

from __future__ import annotations

from typing import Callable


class DynfixError(Exception):
    """A user error with a message fit to print as is.

    A message about one of the caller's arguments names it through a placeholder:
    ``DynfixError("{images} must be at least 1", options=("images",))`` reads "images must
    be at least 1" from the API, and the CLI renders the placeholder as the command's flag
    ("--images must be at least 1", :meth:`render`), so the API never names a flag.
    """

    def __init__(self, message: str, options: tuple[str, ...] = ()):
        self.template = message
        self.options = tuple(options)
        super().__init__(self.render(lambda option: option))

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each option placeholder spelled by ``spell``."""
        if not self.options:
            return self.template
        return self.template.format(**{o: spell(o) for o in self.options})


def member(cls, value, what: str):
    """The member of the enum ``cls`` whose value is ``value`` (``value`` itself when it is
    one), else a :class:`DynfixError` naming ``what`` and the values there are."""
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        raise DynfixError(f"{what} {value!r} is none of "
                          f"{', '.join(str(m.value) for m in cls)}") from None


def literal(text: object) -> str:
    """``text`` (a name or value the user gave) safe inside a message with placeholders."""
    return str(text).replace("{", "{{").replace("}", "}}")


def flag(option: str) -> str:
    """The CLI flag of an API argument: ``raw`` -> ``--raw``, ``calib_data`` ->
    ``--calib-data``."""
    return "--" + option.replace("_", "-")
