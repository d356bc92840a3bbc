"""The exceptions of netcompiler: one base, user errors and internal errors told apart.

Every exception class of the package derives from `NetCompilerError`, through one of two
branches:

- `UserError`: a mistake in the config, the command line, the data or the environment (a
  missing file, a full disk, a dataset that does not fit the network). The command line prints it
  as one line, `netcompiler COMMAND: error: MESSAGE`, and exits with `exit_code` (1, or 2 for a
  usage error). Module-specific classes keep their names and homes (`diagnostics.ConfigError`,
  `train.TrainError`, `datasets.DatasetError`, `layers.base.ShapeError`, ...) and derive from it;
  those that were `ValueError`s stay `ValueError`s too, so code that caught them still does.
- `InternalError`: a bug in netcompiler. The command line prints `internal error: ...; please
  report` (exit 1); with `NETCOMPILER_DEBUG=1` set it re-raises instead, with the traceback. Any
  other unexpected exception is reported the same way.

`Unsupported` is the user error for "netcompiler does not support this (yet)": a config feature
that is valid RETURNN but has no implementation here. `NotImplementedError` is kept for abstract
methods only (a subclass that forgot to implement one is a bug).

Diagnostics (`diagnostics.Diagnostic`) are not exceptions: validation reports all problems of a
config at once, each with a rule id explained by `netcompiler explain RULE` (see `rules.py`).
"""

from __future__ import annotations

#: set to re-raise internal errors (and unexpected exceptions) instead of reporting them
DEBUG_ENV = "NETCOMPILER_DEBUG"
#: exit codes of the command line: all valid, a config (or data, or run) invalid, usage error
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class NetCompilerError(Exception):
    """The base of every exception raised by netcompiler on purpose."""


class UserError(NetCompilerError):
    """A mistake the user can fix (config, command line, data, environment): reported as one
    line without a traceback; the command exits with `exit_code`."""

    exit_code: int = EXIT_INVALID


class UsageError(UserError):
    """A mistake on the command line: a bad argument, an unreadable file named there (exit 2)."""

    exit_code = EXIT_USAGE


class Unsupported(UserError, NotImplementedError):
    """A valid request that netcompiler does not support (e.g. a rec unit inside a rec unit).

    Also a `NotImplementedError`, as such requests were before, so that callers of the Python
    API that caught that still do."""


class InternalError(NetCompilerError):
    """A bug in netcompiler (an invariant that does not hold): reported with a request to file
    an issue; `NETCOMPILER_DEBUG=1` shows the traceback instead."""


def internal_message(exc: BaseException) -> str:
    """The one-line report of an internal error or an unexpected exception."""
    return f"internal error: {type(exc).__name__}: {exc}; please report"


def is_user_error(exc: BaseException) -> bool:
    """True for a mistake the user can fix, False for a bug (an InternalError or anything
    that is not a NetCompilerError)."""
    return isinstance(exc, UserError)
