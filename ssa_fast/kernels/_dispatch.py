"""The backend table of a fused op: backend name -> forward and backward implementation, and the
op's own backend rules.

Every ``kernels/<op>/function.py`` declares one :class:`BackendTable`; implementations are named
``"module.function"`` within the op's package, not imported, so a backend's module (Triton, the
compiled extension) is imported only when that backend runs. Adding a backend to an op is one
entry in its table; what the op's kernels do not take (``supports``) and where the automatic
choice passes over a backend (``prefers``) are given with it, and ``ssa_fast._backend`` applies
them (its rules for every op: which backends can run on a device and dtype).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import NamedTuple

import torch

from .._backend import OpRules, constant_under_compile


class Impl(NamedTuple):
    forward: str  # "module.function" computing the forward, e.g. "native.ssa_core_fwd_native"
    backward: str | None = None  # "module.function" of the gradients; None: no backward


# Evaluated once at trace time under torch.compile (an import inside a traced function would
# break the graph); after it the module is in sys.modules, which dynamo reads like a dict.
@constant_under_compile
def _import(module: str) -> bool:
    importlib.import_module(module)
    return True


class BackendTable(OpRules):
    """`op`'s implementations by backend name, and its rules (see ``_backend.OpRules``)."""

    def __init__(self, op: str, package: str, entries: dict[str, Impl], *, supports=None,
                 prefers=None):
        super().__init__(op, tuple(entries), supports, prefers)
        self.package, self.entries = package, entries
        self._resolved: dict[tuple[str, str], Callable] = {}  # looked up once, not per call

    def _get(self, backend: str, which: str) -> Callable:
        fn = self._resolved.get((backend, which))
        if fn is None:
            fn = self._lookup(backend, which)
            # Not stored while dynamo traces: a dict mutated inside an autograd.Function (this
            # lookup runs in its forward and backward) is an unsupported side effect, which
            # fails a fullgraph compile that runs before any eager call has filled the cache.
            if not torch.compiler.is_compiling():
                self._resolved[(backend, which)] = fn
        return fn

    def _lookup(self, backend: str, which: str) -> Callable:
        if backend not in self.entries:
            raise ValueError(f"{self.package}: no implementation for backend {backend!r} "
                             f"(have {sorted(self.entries)})")
        target = getattr(self.entries[backend], which)
        if target is None:
            raise ValueError(f"{self.package}: backend {backend!r} has no {which}")
        module, name = target.rsplit(".", 1)
        module = f"{self.package}.{module}"
        _import(module)
        return getattr(sys.modules[module], name)

    def forward(self, backend: str) -> Callable:
        return self._get(backend, "forward")

    def backward(self, backend: str) -> Callable:
        return self._get(backend, "backward")
