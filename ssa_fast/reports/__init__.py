"""Figures and tables people look at."""

from .experiment import report_files, write_reports, write_table
from .features import plot_logmel_delta

__all__ = ["plot_logmel_delta", "report_files", "write_reports", "write_table"]
