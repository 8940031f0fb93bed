"""Figures and tables people look at."""

from .features import plot_logmel_delta

__all__ = ["plot_logmel_delta"]
