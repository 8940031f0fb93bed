"""LogMelDelta module: buffers, device/dtype moves, equality with the function."""

import torch
from helpers import device_for, speech_like

import ssa_fast


def test_module_equals_function(backend):
    dev = device_for(backend)
    m = ssa_fast.LogMelDelta(n_mels=64, window="hann", backend=backend).to(dev)
    x = torch.tensor(speech_like(12345, seed=3), dtype=torch.float32, device=dev)
    torch.testing.assert_close(m(x), ssa_fast.logmel_delta(x, n_mels=64, window="hann",
                                                            backend=backend))
    batch = torch.stack([x, x.flip(0)])
    out, flens = m(batch, lengths=torch.tensor([12345, 5000]))
    assert out.shape == (2, 3, m.frames(12345), 64)
    assert flens.tolist() == [m.frames(12345), m.frames(5000)]


def test_buffers_follow_dtype_and_state_dict():
    m = ssa_fast.LogMelDelta()
    assert set(m.state_dict()) == {"window", "mel_fb"}
    assert m.mel_fb.shape == (40, 257) and m.window.shape == (512,)
    m64 = ssa_fast.LogMelDelta(backend="reference").double()
    x = torch.tensor(speech_like(4000, seed=1), dtype=torch.float64)
    assert m64(x).dtype == torch.float64
    assert "n_mels=40" in repr(m)
