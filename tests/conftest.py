"""Test configuration.

Triton kernels run on the CPU through Triton's interpreter unless a CUDA GPU is present; the
variable must be set before any @triton.jit runs, hence before ssa_fast is imported.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from helpers import backends_for_tests  # noqa: E402


@pytest.fixture(params=backends_for_tests())
def backend(request):
    return request.param
