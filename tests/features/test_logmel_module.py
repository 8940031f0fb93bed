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


def test_a_16_bit_conversion_keeps_the_buffers_and_the_features(backend):
    """`.bfloat16()` / `.half()` / `.to(torch.bfloat16)` of the module (or of a model holding
    it) rounded the window and the filterbank to 16 bits: the features moved by up to 1e-2
    (bf16), ten times the tolerance against librosa. They stay float32, and follow devices."""
    dev = device_for(backend)
    x = torch.tensor(speech_like(9000, seed=4), dtype=torch.float32, device=dev)
    want = ssa_fast.LogMelDelta(backend=backend).to(dev)(x)
    for convert in (lambda m: m.bfloat16(), lambda m: m.half(),
                    lambda m: m.to(torch.bfloat16), lambda m: m.to(dev, torch.float16)):
        m = convert(ssa_fast.LogMelDelta(backend=backend).to(dev))
        assert m.window.dtype == m.mel_fb.dtype == torch.float32
        assert m.window.device == m.mel_fb.device == x.device
        torch.testing.assert_close(m(x), want, rtol=0, atol=0)
        held = convert(torch.nn.Sequential(ssa_fast.LogMelDelta(backend=backend).to(dev)))
        assert held[0].mel_fb.dtype == torch.float32
        torch.testing.assert_close(held(x), want, rtol=0, atol=0)
    m = ssa_fast.LogMelDelta().bfloat16()
    m.load_state_dict(ssa_fast.LogMelDelta().state_dict())
    assert m.mel_fb.dtype == torch.float32
    # a bank loaded (or edited) after construction is the one kept through a conversion: the
    # copy taken at construction put the default bank back, moving the features by up to 4
    other = ssa_fast.LogMelDelta(fmin=300.0, htk=True)
    x32 = x.float().cpu()
    for convert in (lambda mod: mod.half(), lambda mod: mod.to(torch.bfloat16)):
        m = ssa_fast.LogMelDelta()
        m.load_state_dict(other.state_dict())
        m = convert(m)
        assert torch.equal(m.mel_fb, other.mel_fb) and m.mel_fb.dtype == torch.float32
        torch.testing.assert_close(m(x32), other(x32), rtol=0, atol=0)
