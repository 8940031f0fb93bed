"""Packages whose names are imported on first use (PEP 562), so that importing a package for
one light module (the command line's parser reading a default, a synthesis worker) does not pull
in torch through its siblings."""

from __future__ import annotations

from importlib import import_module


def lazy_exports(namespace: dict, exports: dict[str, str]):
    """The ``__getattr__`` and ``__dir__`` of the package whose namespace (``globals()``) is
    given; ``exports`` maps its public names to the modules that define them (relative to the
    package when they start with a dot). A name is imported at its first use and then kept in
    the package's namespace."""
    package = namespace["__name__"]

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(exports[name], package), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
