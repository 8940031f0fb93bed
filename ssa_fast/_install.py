"""Facts about how this copy of ssa_fast was installed, for error messages."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path


def checkout_shadowing_hint() -> str:
    """A sentence when ``ssa_fast`` is imported from a source checkout that has no compiled
    extension while an installed copy has one (e.g. ``python -m pytest`` run from the checkout
    after a non-editable ``pip install .``: the current folder comes first on ``sys.path``).
    Empty otherwise."""
    pkg = Path(__file__).resolve().parent
    root = pkg.parent
    if not ((root / "pyproject.toml").is_file() and (root / "csrc").is_dir()):
        return ""
    try:
        files = importlib.metadata.distribution("ssa-fast").files or []
    except importlib.metadata.PackageNotFoundError:
        return ""
    for f in files:
        if (f.parts[:1] == ("ssa_fast",) and f.name.startswith("_C.")
                and f.suffix in (".so", ".pyd")):
            installed = Path(f.locate()).resolve().parent
            if installed != pkg and (installed / f.name).exists():
                return (f"; ssa_fast is imported from the source checkout {pkg}, which has no "
                        f"compiled extension, and hides the installed copy in {installed}: run "
                        "from another folder, or install the checkout in place with "
                        "`pip install --no-build-isolation -e .`")
    return ""
