"""The synthetic corpus: determinism, balance, 16 kHz, and prosody as designed (measured)."""

import hashlib

import numpy as np
import pytest

from ssa_fast.data import EMOTIONS, PHRASES, load_corpus, synthesize_corpus
from ssa_fast.data.synthetic import plan, speaker_profiles

librosa = pytest.importorskip("librosa")
sf = pytest.importorskip("soundfile")  # not on every GPU image: the module skips


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    synthesize_corpus(out, "tiny", seed=3, jobs=2, progress=False)
    return out


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted((folder / "wav").glob("*.wav")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_balanced_16k_and_deterministic(tiny, tmp_path):
    c = load_corpus("synthetic", tiny)
    assert c.classes == list(EMOTIONS) and not c.skipped
    assert len(c) == 2 * 4 * 2
    counts = {(s, e): 0 for s in c.speakers for e in EMOTIONS}
    for r in c:
        counts[(r.speaker, r.label)] += 1
    assert set(counts.values()) == {2}
    info = sf.info(c[0].path)
    assert info.samplerate == 16000 and info.channels == 1 and info.duration > 1.0
    synthesize_corpus(tmp_path, "tiny", seed=3, jobs=1, progress=False)
    assert _digest(tmp_path) == _digest(tiny)


def test_phrase_list_supports_the_linguistic_split():
    assert len(set(PHRASES)) >= 100


def test_emotion_to_style_map_depends_on_the_speaker():
    profiles = speaker_profiles(3)
    maps = [tuple(p["styles"][e] for e in EMOTIONS[1:]) for p in profiles]
    assert len(set(maps)) == 3 and all(p["styles"]["neu"] == "plain" for p in profiles)


def _measure(path):
    y, sr = sf.read(path)
    f0 = librosa.yin(y, fmin=50, fmax=500, sr=sr, frame_length=1024)
    rms = librosa.feature.rms(y=y, frame_length=1024, hop_length=256)[0]
    voiced = rms[: len(f0)] > 0.3 * rms.max()
    return float(np.median(f0[voiced])), len(y) / sr, float(np.sqrt(np.mean(y ** 2)))


def test_prosody_differs_as_designed(tiny):
    """Measured on the audio: the style A emotion is higher-pitched than the style B one and
    style B is the slowest, and which emotion that is differs between the two speakers."""
    utts, profiles = plan("tiny", seed=3)
    for prof in profiles:
        by_style = {}
        for e in EMOTIONS:
            files = sorted((tiny / "wav").glob(f"{prof['speaker']}_{e}_*.wav"))
            m = np.array([_measure(f) for f in files]).mean(axis=0)
            by_style[prof["styles"][e]] = m
        assert by_style["A"][0] > 1.1 * by_style["B"][0]  # pitch
        assert by_style["B"][1] > 1.15 * max(by_style["A"][1], by_style["C"][1])  # duration
        assert by_style["C"][2] > 1.2 * by_style["B"][2]  # loudness
    styles_of_hap = {p["styles"]["hap"] for p in profiles}
    assert len(styles_of_hap) == 2


def test_every_voice_is_the_same_from_one_run_to_the_next():
    """espeak-ng seeds some variants' noise (breath) from the clock: no such voice may be used.
    Two fresh processes more than a second apart must give identical samples for every voice."""
    import subprocess
    import sys
    import time

    from ssa_fast.data.synthetic import VOICES

    code = ("import hashlib, sys; from ssa_fast.audio.espeak import synthesize; "
            "print(' '.join(hashlib.md5(synthesize('My sister was waiting near the river.', v, "
            "rate=170, pitch=55, pitch_range=60)[0].tobytes()).hexdigest() for v in sys.argv[1:]))")
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code, *VOICES], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        runs.append(proc.stdout.split())
        time.sleep(1.1)
    assert len(runs[0]) == len(VOICES) and len(set(runs[0])) == len(VOICES)  # all distinct
    assert runs[0] == runs[1], [v for v, a, b in zip(VOICES, *runs, strict=True) if a != b]
