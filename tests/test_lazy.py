"""The packages that import their names on first use (ssa_fast/_lazy.py) behave as eager ones:
every public name resolves, a submodule is an attribute, dir() lists what they offer; and
importing them costs no torch until a name needs it."""

import subprocess
import sys

import pytest

PACKAGES = ("ssa_fast", "ssa_fast.data", "ssa_fast.features", "ssa_fast.models", "ssa_fast.train",
            "ssa_fast.reports")


def test_lazy_packages_import_no_torch_until_a_name_needs_it():
    script = f"""
import importlib, sys
for name in {PACKAGES!r}:
    importlib.import_module(name)
assert "torch" not in sys.modules, "imported torch"
import ssa_fast.train as t
assert t.config.TrainConfig is t.TrainConfig  # (a submodule, as an attribute)
assert "torch" not in sys.modules, "a torch-free submodule imported torch"
t.loop  # (a submodule that needs torch)
assert "torch" in sys.modules
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_of_a_lazy_package_resolves(name):
    import importlib

    package = importlib.import_module(name)
    for public in package.__all__:
        assert getattr(package, public) is not None, public
    listed = dir(package)
    assert set(package.__all__) <= set(listed) and "lazy_exports" not in listed, listed
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        package.not_a_name  # noqa: B018
