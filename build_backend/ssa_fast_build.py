"""In-tree PEP 517 build backend: scikit-build-core, built against the target environment's torch.

Why: the C++ extension must be compiled against exactly the torch it will be imported with. With
build isolation (plain ``pip install .``), a static ``torch`` build requirement makes pip install
the newest torch from PyPI into a throw-away build environment (several GB of CUDA libraries), and
an extension built there would not load with the user's torch anyway.

So this backend asks the interpreter that runs the build for its torch: first directly (no
isolation: ``--no-build-isolation``, editable installs), then through ``python -I``, which starts
the same interpreter without the build environment's ``PYTHONPATH`` and so sees the target
environment's site-packages. When a torch is found, it is not a build requirement and its CMake
prefix is passed to CMake (``SSA_TORCH_CMAKE_PREFIX``, ``SSA_TORCH_HAS_CUDA``); when none is
found, ``torch`` becomes a build requirement (the old behaviour) and CMake asks the build
environment's torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from scikit_build_core import build as _skbuild

_QUERY = ("import json, torch, torch.utils; print(json.dumps({'version': torch.__version__, "
          "'prefix': torch.utils.cmake_prefix_path, 'cuda': torch.version.cuda is not None, "
          "'cxx11_abi': int(torch._C._GLIBCXX_USE_CXX11_ABI)}))")
_TORCH_REQUIREMENT = "torch>=2.4"
_cached: dict | None = None


def _target_torch() -> dict | None:
    """{'version', 'prefix', 'cuda'} of the torch the target interpreter imports, or None."""
    global _cached
    if _cached is not None:
        return _cached or None
    info: dict = {}
    if os.environ.get("SSA_FAST_BUILD_IGNORE_TARGET_TORCH", "") in ("", "0"):
        for argv in ([sys.executable, "-c", _QUERY], [sys.executable, "-I", "-c", _QUERY]):
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                                     check=True).stdout
                info = json.loads(out.strip().splitlines()[-1])
                break
            except (subprocess.SubprocessError, OSError, ValueError, IndexError):
                continue
    _cached = info
    if info:
        print(f"ssa_fast build: building against the installed torch {info['version']} "
              f"({info['prefix']})", file=sys.stderr)
    else:
        print(f"ssa_fast build: no torch in the target environment; '{_TORCH_REQUIREMENT}' "
              "becomes a build requirement", file=sys.stderr)
    return info or None


def _requires(extra: list[str]) -> list[str]:
    return list(extra) + ([] if _target_torch() else [_TORCH_REQUIREMENT])


def _settings(config_settings: dict | None) -> dict:
    settings = dict(config_settings or {})
    info = _target_torch()
    if info:
        settings.setdefault("cmake.define.SSA_TORCH_CMAKE_PREFIX", info["prefix"])
        settings.setdefault("cmake.define.SSA_TORCH_HAS_CUDA", "1" if info["cuda"] else "0")
        settings.setdefault("cmake.define.SSA_TORCH_CXX11_ABI", str(info["cxx11_abi"]))
    return settings


def get_requires_for_build_wheel(config_settings=None):
    return _requires(_skbuild.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(config_settings=None):
    return _requires(_skbuild.get_requires_for_build_editable(config_settings))


def get_requires_for_build_sdist(config_settings=None):
    return _skbuild.get_requires_for_build_sdist(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _skbuild.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _skbuild.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _skbuild.build_wheel(wheel_directory, _settings(config_settings), metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _skbuild.build_editable(wheel_directory, _settings(config_settings),
                                   metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    return _skbuild.build_sdist(sdist_directory, config_settings)
