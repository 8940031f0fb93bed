"""Export of the models: torch.export round trips through torch.export.save/load (into a fresh
process) on the reference and the C++ backends; ONNX from the reference backend where the
exporter's packages are installed (the custom ops of the C++ and Triton backends have no ONNX
form)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from ssa_fast.models import ACRNN, SSACRNN


def _models(backend):
    torch.manual_seed(0)
    return [ACRNN(4, "small", backend=backend).eval(),
            SSACRNN(4, 3, "small", segment_frames=100, backend=backend).eval()]


def _first(out):
    return out.emotion_logits


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.slow
def test_torch_export_round_trip_in_a_fresh_process(tmp_path, backend):
    from ssa_fast import available_backends

    if backend not in available_backends("cpu"):
        pytest.skip(f"backend {backend} is not built here")
    x = torch.randn(3, 3, 100, 40)
    for i, m in enumerate(_models(backend)):
        batch = torch.export.Dim("batch", min=1, max=1024)
        ep = torch.export.export(m, (x,), dynamic_shapes=({0: batch},))
        torch.export.save(ep, tmp_path / f"m{i}.pt2")
        x5 = torch.randn(5, 3, 100, 40)
        torch.save({"x": x5, "y": _first(m(x5)).detach()}, tmp_path / f"io{i}.pt")
        if backend == "cpp" and isinstance(m, SSACRNN):  # the extension's op, not a fallback
            assert "ssa_fast.ssa_core_fwd" in ep.graph_module.print_readable(print_output=False)
    # what registers the ops and the output type (docs/usage.md, Export): ModelOutput asked
    # for, even after the package was imported without torch (as the command line's parser
    # does); and, as before the package was lazy, the package imported after torch
    imports = {"cpp": "import torch, ssa_fast.models",
               "reference": "import ssa_fast.train, ssa_fast.models; "
                            "from ssa_fast.models import ModelOutput; import torch"}[backend]
    script = textwrap.dedent(f"""
        {imports}
        for i in range(2):
            ep = torch.export.load({str(tmp_path)!r} + f"/m{{i}}.pt2")
            io = torch.load({str(tmp_path)!r} + f"/io{{i}}.pt", weights_only=True)
            out = ep.module()(io["x"])
            assert type(out) is ssa_fast.models.ModelOutput, type(out)
            assert (out.speaker_logits is None) == (i == 0)  # ACRNN: no speaker fields
            y = out.emotion_logits
            err = (y - io["y"]).abs().max().item()
            assert err < 1e-5, err
            print(i, err)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_onnx_export_of_the_reference_backend(tmp_path):
    pytest.importorskip("onnxscript")  # the `export` extra: pip install "ssa-fast[export]"
    ort = pytest.importorskip("onnxruntime")
    x = torch.randn(2, 3, 100, 40)
    for m in _models("reference"):
        prog = torch.onnx.export(m, (x,), dynamo=True,
                                 dynamic_shapes=({0: torch.export.Dim("batch")},))
        path = tmp_path / f"{type(m).__name__}.onnx"
        prog.save(str(path))
        session = ort.InferenceSession(str(path))
        x5 = torch.randn(5, 3, 100, 40)
        (y, *_) = session.run(None, {session.get_inputs()[0].name: x5.numpy()})
        assert np.abs(y - _first(m(x5)).detach().numpy()).max() < 1e-4
