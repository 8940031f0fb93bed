"""The error type of mistakes a user can fix: a bad path, option value, data file or checkpoint.

The command line prints a :class:`UserError` as one line (``ssa-fast <cmd>: error: ...``) and
exits with status 2; any other exception is a bug and keeps its traceback. It subclasses
ValueError so that library callers catching ValueError keep working.
"""


class UserError(ValueError):
    """A mistake in the input (path, option, data, checkpoint); the message names it and says
    what was expected."""
