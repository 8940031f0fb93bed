"""The Python prediction API (EmotionClassifier) on a model trained by the CLI, against the CLI's
own `predict` and against itself (files vs in-memory waveforms, batches vs single calls)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ssa_fast import EmotionClassifier

sf = pytest.importorskip("soundfile")


def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", "ssa_fast.cli", *args], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


def _close(a: dict, b: dict, tol: float) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= tol for k in a)


def test_classify_file_matches_the_cli(trained):
    ckpt, corpus = trained
    wavs = sorted((corpus / "wav").glob("*.wav"))[:3]
    cli = json.loads(_cli("predict", str(ckpt), *map(str, wavs), "--json", "--quiet").stdout)
    clf = EmotionClassifier.from_checkpoint(ckpt)
    assert sorted(clf.classes) == ["ang", "hap", "neu", "sad"]
    for wav, row in zip(wavs, cli, strict=True):
        p = clf.classify_file(wav)
        assert p.label == row["emotion"]
        assert _close(p.probabilities, row["probabilities"], 1e-6)
        assert [s.label for s in p.segments] == row["segments"]
        assert p.normalisation == "utterance"
        assert abs(sum(p.probabilities.values()) - 1) < 1e-5


def test_in_memory_waveforms_equal_files_and_batches_equal_single_calls(trained):
    ckpt, corpus = trained
    clf = EmotionClassifier.from_checkpoint(ckpt)
    wavs = sorted((corpus / "wav").glob("*.wav"))[:3]
    waves = [sf.read(str(w), dtype="float32")[0] for w in wavs]
    batch = clf.classify_batch(waves, sample_rate=16000)
    for w, wave, p in zip(wavs, waves, batch, strict=True):
        single = clf.classify(torch.from_numpy(wave), 16000)
        from_file = clf.classify_file(w)
        assert _close(p.probabilities, single.probabilities, 1e-6)
        assert _close(p.probabilities, from_file.probabilities, 1e-4)
        # segments tile the utterance from 0 s in hop steps
        assert p.segments[0].start == 0.0
        assert all(a.end == b.start for a, b in zip(p.segments, p.segments[1:], strict=False))
        assert p.segments[-1].end <= p.duration == len(wave) / 16000
    # frames are centred: the last frame's segment ends with the audio, not a frame past it
    short = clf.classify(waves[0][:15990], 16000)  # (100 frames: one segment of 100)
    assert [s.frames for s in short.segments] == [100]
    assert short.segments[-1].end == short.duration == 15990 / 16000


def test_other_sample_rates_stereo_and_known_speakers(trained):
    ckpt, corpus = trained
    clf = EmotionClassifier.from_checkpoint(ckpt)
    wav = sorted((corpus / "wav").glob("*.wav"))[0]
    wave, sr = sf.read(str(wav), dtype="float32")
    import soxr

    wave22 = soxr.resample(wave, sr, 22050).astype(np.float32)
    f16, f22 = clf.features(wave, 16000), clf.features(wave22, 22050)
    assert f16.shape == f22.shape
    voiced = f16[0] > np.log(1e-6)  # the resampling round trip only matters where there is sound
    assert (f16[0] - f22[0]).abs()[voiced].median() < 0.05
    stereo = np.stack([wave, wave])  # (channels, N) is mixed down
    assert _close(clf.classify(stereo, 16000).probabilities,
                  clf.classify(wave, 16000).probabilities, 1e-6)
    speaker = clf.speakers[0]
    p = clf.classify(wave, 16000, speaker=speaker)
    assert p.normalisation == "speaker"
    assert clf.is_ssa  # the fixture trains SSA-CRNN-r: its attention must come back
    att = clf.classify(wave, 16000, attention=True).attention
    assert att is not None and att["alpha_em"].shape[0] == len(p.segments)
    total = att["alpha_em"].sum(1) + att["alpha_sp"].sum(1)  # one softmax over 2T per segment
    assert (att["alpha_em"] >= 0).all() and (att["alpha_sp"] >= 0).all()
    assert np.allclose(total, 1, atol=1e-5)
    # each utterance of a batch gets its own segments' attention, as alone and as from its file
    other = sf.read(str(sorted((corpus / "wav").glob("*.wav"))[1]), dtype="float32")[0]
    in_batch = clf.classify_batch([other, wave], 16000, attention=True)[1].attention
    from_file = clf.classify_file(wav, attention=True).attention
    for key in ("alpha_em", "alpha_sp"):
        np.testing.assert_allclose(in_batch[key], att[key], atol=1e-6)
        np.testing.assert_allclose(from_file[key], att[key], atol=1e-4)


def test_errors_name_the_argument(trained):
    ckpt, _ = trained
    clf = EmotionClassifier.from_checkpoint(ckpt)
    with pytest.raises(ValueError, match="sample_rate"):
        clf.classify_batch([np.zeros(16000, np.float32)], sample_rate=0)
    with pytest.raises(ValueError, match="2 waveforms but 1 speakers"):
        clf.classify_batch([np.zeros(16000, np.float32)] * 2, 16000, speakers=["a"])
    with pytest.raises(ValueError, match="non-empty"):
        clf.classify(np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="NaN"):
        clf.classify(np.full(16000, np.nan, np.float32), 16000)
    assert clf.classify_batch([], 16000) == []


def test_an_in_memory_waveform_needs_its_sample_rate(trained):
    """An array does not know its rate: 44.1 kHz audio read as 16 kHz (the old default) is
    slowed-down speech, other segments, other probabilities, without a word."""
    ckpt, _ = trained
    clf = EmotionClassifier.from_checkpoint(ckpt)
    wave = np.random.default_rng(0).standard_normal(44100).astype(np.float32) * 0.1
    with pytest.raises(TypeError, match="sample_rate"):
        clf.classify(wave)
    with pytest.raises(TypeError, match="sample_rate"):
        clf.classify_batch([wave])
    # a numpy integer is an integer
    assert clf.classify(wave, np.int64(44100)).probabilities == \
        clf.classify(wave, 44100).probabilities
    for bad in (44100.0, True, "44100"):
        with pytest.raises(ValueError, match="sample_rate must be a positive int"):
            clf.classify(wave, bad)


def test_float_samples_on_the_integer_scale_are_named(trained):
    """Integer PCM cast to float without scaling (scipy.io.wavfile's int16 as float) shifts
    the log-Mel by 2 ln 32768: with a speaker's statistics another class. It is classified as
    given, with a warning naming the waveform; audio on the scale of files is not warned."""
    import warnings

    ckpt, corpus = trained
    clf = EmotionClassifier.from_checkpoint(ckpt)
    wave, sr = sf.read(next(corpus.rglob("*.wav")), dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.classify(wave * 1.5, sr)  # (a hot recording, a little over 1: no warning)
        clf.classify_batch([wave, wave], sr)
    with pytest.warns(RuntimeWarning, match=r"waveform 1: float samples up to [0-9.e+]+, but "
                      r"float audio lies in \[-1, 1\].*divide it by 32768") as caught:
        clf.classify_batch([wave, wave * 32768], sr)
    assert caught[0].filename == __file__ and len(caught) == 1


def test_prediction_imports_nothing_from_training():
    """predict/ sits below train/: the scorer and the pooling come from models/scoring.py."""
    code = ("import sys, ssa_fast.predict, ssa_fast.predict.engine; "
            "bad = sorted(m for m in sys.modules if m.startswith('ssa_fast.train')); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_integer_pcm_is_scaled_as_files_are(trained):
    """int16 samples (soundfile.read(..., dtype="int16")) give the file's own prediction, also
    with a known speaker's statistics (where unscaled samples shift every feature)."""
    ckpt, corpus = trained
    clf = EmotionClassifier.from_checkpoint(ckpt)
    wav = sorted((corpus / "wav").glob("*.wav"))[0]
    speaker = clf.speakers[0]
    from_file = clf.classify_file(wav, speaker)
    pcm16, sr = sf.read(str(wav), dtype="int16")
    pcm32, _ = sf.read(str(wav), dtype="int32")
    for pcm in (pcm16, torch.from_numpy(pcm16), pcm32):
        p = clf.classify(pcm, sr, speaker=speaker)
        assert _close(p.probabilities, from_file.probabilities, 1e-4)
    f = clf.features(pcm16, sr)
    assert (f - clf.features(sf.read(str(wav), dtype="float32")[0], sr)).abs().max() < 1e-3
    with pytest.raises(TypeError, match="int64"):
        clf.classify(pcm16.astype(np.int64), sr)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["bundle"]["feature_params"].update(hop_length=320),
     "feature hop_length against the run's: 320 against 160"),
    (lambda c: c["bundle"]["feature_params"].update(sample_rate=8000),
     "feature sample_rate against the run's: 8000 against 16000"),
    (lambda c: c["bundle"]["feature_params"].update(n_mels=64),
     "the features' mel bands against the model's: 64 against 40"),
    (lambda c: c["config"].update(pooling="median"), "pooling 'median' (one of mean, max)"),
    (lambda c: c["bundle"].update(classes=c["bundle"]["classes"][:3]),
     "classes against the model's outputs: 3 against 4"),
    (lambda c: c["bundle"].update(segment_frames=300),
     "the segment length against the model's: 300 against 100"),
    (lambda c: [s.update(mean=s["mean"][..., :3]) for s in
                c["bundle"]["normaliser"]["stats"].values()],
     "have (3,) mel bands against the features' 40"),
    # reordered classes label every output with another class (the UAR of the run's own
    # validation set fell from 50 % to 12.5 %); an identity edited under its fingerprint
    (lambda c: c["bundle"].update(classes=c["bundle"]["classes"][::-1]),
     "the classes against the run's: ["),
    (lambda c: c["identity"].update(split="0" * 16),
     "the run's identity against its fingerprint"),
])
def test_a_checkpoint_whose_parts_disagree_is_refused_in_one_line(trained, tmp_path, edit,
                                                                   message):
    """A best.pt whose parts contradict each other (edited by hand, or assembled from two
    runs): edited feature settings, a pooling no code has, the wrong statistics predicted
    without a word; a count mismatch failed at the first file with a traceback."""
    best, corpus = trained
    ckpt = torch.load(best, weights_only=True)
    edit(ckpt)
    path = tmp_path / "edited.pt"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="an inconsistent checkpoint") as info:
        EmotionClassifier.from_checkpoint(path)
    assert message in str(info.value) and "\n" not in str(info.value)
    proc = subprocess.run([sys.executable, "-m", "ssa_fast.cli", "predict", str(path),
                           str(next(corpus.rglob("*.wav")))], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    EmotionClassifier.from_checkpoint(best)  # (the run's own file loads)


def test_a_speaker_name_that_normalises_nothing_is_said_once(trained):
    """A misspelt training speaker reads as an unseen one (its utterances normalised with their
    own statistics): said once per name; a training speaker, or no name, says nothing."""
    import warnings

    ckpt, corpus = trained
    clf = EmotionClassifier.from_checkpoint(ckpt)
    wave, sr = sf.read(next(corpus.rglob("*.wav")), dtype="float32")
    known = clf.speakers[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.classify(wave, sr, speaker=known)
        clf.classify(wave, sr)
    typo = known.upper()
    with pytest.warns(UserWarning, match=f"speaker '{typo}' was not in training \\(the "
                      f"checkpoint's speakers: {', '.join(clf.speakers)}\\)") as caught:
        p = clf.classify_batch([wave, wave], sr, speakers=[typo, typo])
    assert len(caught) == 1 and caught[0].filename == __file__
    assert [x.normalisation for x in p] == ["utterance", "utterance"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.classify(wave, sr, speaker=typo)  # (said once)
