"""Figures and tables people look at."""

from .experiment import write_reports, write_table
from .features import plot_logmel_delta

__all__ = ["plot_logmel_delta", "write_reports", "write_table"]
