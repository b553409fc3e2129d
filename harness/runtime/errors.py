"""The harness's own exceptions.

Two kinds of trouble reach the user: *input errors* (a bad spec, a missing
artifact, an unknown option), which the CLI turns into one line on stderr and
exit status 2; and *unsupported* features of the env at hand, which become a
`skip` cell with the reason. Everything else is a torch behaviour under test
and is recorded as an outcome, never raised past the runner.
"""

from __future__ import annotations

__all__ = ["FactoryUnavailable", "HarnessError", "InputError", "SpecError", "Unsupported"]


class HarnessError(Exception):
    """Base class: the message is complete and fit to print on one line."""

    exit_status = 2


class InputError(HarnessError):
    """Bad user input: a path that does not exist, an unknown name, bad JSON."""


class SpecError(InputError):
    """An invalid spec. `field` is the dotted path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"spec field {field}: {message}")


class Unsupported(HarnessError):
    """This env lacks a feature (a layer, a format, a load option).

    Raised while building or saving; the runner records it as a `skip` whose
    detail is the message, so the message must say what is missing.
    """


class FactoryUnavailable(InputError):
    """A user case's factory cannot be imported or called in this env.

    At save time it is an input error (exit 2); in a load it is an error cell
    that says which env lacks the user's code.
    """
