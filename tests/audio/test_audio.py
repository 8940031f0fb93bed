"""Audio I/O and espeak-ng synthesis, on real files and the real library."""

import numpy as np
import pytest

from ssa_fast.audio import AudioError, EspeakError, load, resample, synthesize

sf = pytest.importorskip("soundfile")  # not on every GPU image: the module skips


def test_load_mixes_down_scales_and_resamples(tmp_path):
    sr = 22050
    t = np.arange(sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.25 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), sr, subtype="PCM_16")
    y = load(path, 16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 16000) <= 1
    # mean of the channels, amplitude 0.375, still a 440 Hz tone
    assert 0.36 < np.abs(y[1000:-1000]).max() < 0.39
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 16000 / len(y) - 440) < 2


@pytest.mark.parametrize("content, match", [
    (b"", r"an empty file \(0 bytes\), not audio"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio", "cannot read"),
    (b"just some text pretending to be audio" * 10, "cannot read"),
])
def test_corrupt_files_name_the_file(tmp_path, content, match):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=match) as err:
        load(path)
    assert "broken.wav" in str(err.value)


def test_a_file_too_short_to_resample_is_an_audio_error(tmp_path):
    """One sample at 44.1 kHz resamples to none at 16 kHz: load gave an empty array (features
    then failed for the whole batch or corpus) and the streamed reader nothing at all."""
    from ssa_fast.audio.io import audio_blocks

    path = tmp_path / "tiny.wav"
    sf.write(path, np.array([0.1], np.float32), 44100)
    with pytest.raises(AudioError, match="tiny.wav: 1 sample.* give no sample at 16000 Hz"):
        load(path, 16000)
    with pytest.raises(AudioError, match="tiny.wav: 1 sample.* give no sample at 16000 Hz"):
        list(audio_blocks(path, 16000))
    assert len(load(path, 44100)) == 1  # (at its own rate it is a sample)


def test_missing_and_empty_files(tmp_path):
    """A path that is no audio file is said in plain words, by the whole-file and the streamed
    reader alike (soundfile's own messages: "System error.", "Format not recognised.")."""
    from ssa_fast.audio.io import audio_blocks

    for path, why in ((tmp_path / "missing.wav", "no such file"),
                      (tmp_path, "a folder, not an audio file")):
        for read in (load, lambda p: next(audio_blocks(p))):
            with pytest.raises(AudioError) as err:
                read(path)
            assert str(err.value) == f"{path}: {why}"
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0,), np.float32), 16000)
    with pytest.raises(AudioError, match="no samples"):
        load(empty)


def test_resample_identity_and_length():
    y = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
    assert resample(y, 16000, 16000) is y
    assert abs(len(resample(y, 22050, 16000)) - 16000) <= 1


def test_espeak_synthesises_speech_with_prosody_controls():
    slow, sr = synthesize("The weather is lovely today.", "en-us", rate=120)
    fast, sr2 = synthesize("The weather is lovely today.", "en-us", rate=300)
    assert sr == sr2 > 8000
    assert slow.dtype == np.float32 and np.abs(slow).max() <= 1.0
    assert 0.01 < slow.std() < 0.5
    assert len(slow) > 1.6 * len(fast)  # rate is words per minute
    quiet, _ = synthesize("The weather is lovely today.", "en-us", rate=300, volume=30)
    assert quiet.std() < 0.6 * fast.std()


def test_espeak_errors():
    with pytest.raises(ValueError, match="non-empty"):
        synthesize("   ")
    with pytest.raises(EspeakError, match="no voice"):
        synthesize("hello", "xx-not-a-voice")


def test_float_samples_beyond_audio_range_are_refused_naming_the_file(tmp_path):
    """A float file with samples above 1e15 is corrupt, not loud: refused by the loader and the
    streamed reader alike (before it could abort a multi-file run inside feature extraction)."""
    from ssa_fast.audio.io import audio_blocks

    loud = np.full(3000, 2.0, np.float32)  # clipped but audio: accepted
    sf.write(tmp_path / "loud.wav", loud, 16000, subtype="FLOAT")
    assert np.allclose(load(tmp_path / "loud.wav"), 2.0)
    y = np.zeros(3000, np.float32)
    y[1234] = -3e16
    sf.write(tmp_path / "huge.wav", y, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"huge.wav: samples up to 3e\+16 are not audio"):
        load(tmp_path / "huge.wav")
    with pytest.raises(AudioError, match="huge.wav: samples up to"):
        list(audio_blocks(tmp_path / "huge.wav", block_samples=1000))


def test_in_memory_samples_in_any_byte_order_or_16_bit_float_tensors():
    """A big-endian int16 array was refused as "not int16", a big-endian float32 array failed
    in torch, and a bf16 tensor failed in numpy: the same samples, read as they are."""
    import torch

    import ssa_fast
    from ssa_fast.audio.io import mono

    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(4000) * 3000).astype(np.int16)
    assert np.array_equal(mono(pcm.astype(">i2")), mono(pcm))
    f = (pcm / 32768).astype(np.float32)
    assert np.array_equal(mono(f.astype(">f4")), f)
    torch.testing.assert_close(ssa_fast.logmel_delta(f.astype(">f4"), backend="reference"),
                               ssa_fast.logmel_delta(f, backend="reference"), rtol=0, atol=0)
    for dtype in (torch.bfloat16, torch.float16):
        t = torch.from_numpy(f).to(dtype)
        assert np.array_equal(mono(t), t.float().numpy())
