"""Packages whose names are imported on first use (PEP 562), so that importing a package for
one light module (the command line's parser reading a default, a synthesis worker) does not pull
in torch through its siblings."""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec


def lazy_exports(namespace: dict, exports: dict[str, str]):
    """The ``__getattr__`` and ``__dir__`` of the package whose namespace (``globals()``) is
    given; ``exports`` maps its public names to the modules that define them (relative to the
    package when they start with a dot). A name is imported at its first use and then kept in
    the package's namespace; so is a submodule asked for as an attribute (``pkg.sub`` after
    ``import pkg``), as an eager package's would be."""
    package = namespace["__name__"]

    def __getattr__(name: str):
        if name in exports:
            value = getattr(import_module(exports[name], package), name)
        elif not name.startswith("__") and find_spec(f"{package}.{name}") is not None:
            value = import_module(f"{package}.{name}")  # (sets the attribute itself)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__():  # (the public names: the exports and the submodules imported so far)
        return sorted(set(exports) | {name for name, value in namespace.items()
                                      if not name.startswith("_") and value is not lazy_exports})

    return __getattr__, __dir__
