"""Figures and tables people look at.

Names are imported on first use: the command line reads the figure formats without torch or
matplotlib."""

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["report_files", "write_reports", "write_table"], ".experiment"),
    "plot_logmel_delta": ".features",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
