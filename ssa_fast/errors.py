"""The error types of mistakes a user can fix: a bad path, option value, data file or
checkpoint (:class:`UserError`), a backend asked for that cannot run here
(:class:`BackendUnavailableError`). Torch-free.

The command line prints either as one line (``ssa-fast <cmd>: error: ...``) and exits with
status 2; any other exception is a bug and keeps its traceback. UserError subclasses ValueError
so that library callers catching ValueError keep working.
"""


class UserError(ValueError):
    """A mistake in the input (path, option, data, checkpoint); the message names it and says
    what was expected."""


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run here (the message says why); the command line
    prints it as one line too."""
