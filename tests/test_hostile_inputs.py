"""Hostile input, property-based (hypothesis): every public function that takes arrays or files
either gives a correct result, a clear error that names the argument or file, or a documented
skip; never a crash deep inside or a silent wrong result."""

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import ssa_fast
from ssa_fast.audio import AudioError, load
from ssa_fast.data.corpus import load_corpus, load_manifest
from ssa_fast.data.segments import Normaliser, make_segments, segment_bounds
from ssa_fast.predict.engine import load_trained
from ssa_fast.train import confusion_matrix, uar

sf = pytest.importorskip("soundfile")  # not on every GPU image: the module skips

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
SAMPLE_VALUES = st.one_of(st.floats(-1, 1, width=32), st.just(float("nan")),
                          st.just(float("inf")), st.just(-float("inf")), st.just(3e38),
                          st.just(1e20), st.just(0.0))
DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int16, np.int32, np.bool_,
                          np.complex64, np.uint8])


# -- logmel_delta ------------------------------------------------------------------------------

@FAST
@given(DTYPES, st.lists(st.integers(0, 60), min_size=0, max_size=3).map(tuple), st.data())
def test_logmel_delta_on_arbitrary_arrays(dtype, shape, data):
    shape = shape[:-1] + (shape[-1] * 40,) if shape else shape  # waveforms up to 2400 samples
    values = data.draw(arrays(np.float64, shape, elements=SAMPLE_VALUES,
                              fill=st.floats(-1, 1, width=32)))
    with np.errstate(all="ignore"):
        x = values.astype(dtype)
    try:
        out = ssa_fast.logmel_delta(x)
    except (TypeError, ValueError) as exc:
        assert "waveform" in str(exc)  # names the argument
        return
    # accepted: a float waveform of rank 1-2 with finite, audio-range samples
    assert x.ndim in (1, 2) and np.issubdtype(x.dtype, np.floating) and x.size > 0
    assert np.isfinite(x.astype(np.float64)).all() and np.abs(x.astype(np.float64)).max() <= 1e15
    assert out.shape[-3] == 3 and out.shape[-1] == 40
    assert torch.isfinite(out).all()


@FAST
@given(st.integers(1, 4000), st.floats(1e-6, 1e12), st.sampled_from([torch.float32,
                                                                        torch.float64]))
def test_logmel_delta_is_finite_for_any_finite_audio_level(n, level, dtype):
    g = torch.Generator().manual_seed(n)
    x = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * level
    out = ssa_fast.logmel_delta(x.to(dtype))
    assert torch.isfinite(out).all()
    assert out.shape == (3, 1 + n // 160, 40)


def test_logmel_delta_refuses_samples_that_would_overflow():
    with pytest.raises(ValueError, match="waveform.*audio"):
        ssa_fast.logmel_delta(torch.full((4000,), 1e20))


# -- ssa_attention and l1_project_ -------------------------------------------------------------

@FAST
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 5), st.integers(0, 7),
       st.sampled_from(["h_sp", "w_q", "w_k_em", "w_v_sp", None]))
def test_ssa_attention_shapes(B, T, d, which_bad, bad_arg):
    g = torch.Generator().manual_seed(B * 100 + T * 10 + d)
    shapes = {"h_em": (B, T, d), "h_sp": (B, T, d), "w_q": (T,), "w_k_em": (d, d),
              "w_k_sp": (d, d), "w_v_em": (d, d), "w_v_sp": (d, d)}
    if bad_arg is not None:
        s = list(shapes[bad_arg])
        s[which_bad % len(s)] += 1
        shapes[bad_arg] = tuple(s)
    args = [torch.randn(*s, generator=g) for s in shapes.values()]
    if bad_arg is not None:
        with pytest.raises(ValueError, match=bad_arg):
            ssa_fast.ssa_attention(*args)
        return
    c, alpha = ssa_fast.ssa_attention(*args)
    assert c.shape == (B, 2 * d) and torch.isfinite(c).all()
    torch.testing.assert_close(alpha.sum(1), torch.ones(B, dtype=alpha.dtype))


def test_ssa_attention_propagates_nan_documented():
    """Non-finite activations are propagated (as every torch op does), not hidden."""
    args = [torch.randn(2, 4, 3), torch.randn(2, 4, 3), torch.randn(4)] + \
        [torch.randn(3, 3) for _ in range(4)]
    args[0][1, 2, 0] = float("nan")
    c, _ = ssa_fast.ssa_attention(*args)
    assert torch.isfinite(c[0]).all() and torch.isnan(c[1]).all()
    with pytest.raises(TypeError, match="h_em must be a torch.Tensor of shape .* got ndarray"):
        ssa_fast.ssa_attention(np.zeros((2, 4, 3)), *args[1:])  # (not "got (2, 4, 3)")
    with pytest.raises(TypeError, match="floating"):
        ssa_fast.ssa_attention(args[0].long(), *args[1:])


@FAST
@given(st.integers(1, 6), st.integers(1, 9), st.integers(1, 12),
       st.lists(SAMPLE_VALUES, min_size=1, max_size=4))
def test_l1_project_never_produces_nan(K, n, N, specials):
    g = torch.Generator().manual_seed(K * 1000 + n * 10 + N)
    w = torch.randn(K, n, generator=g)
    x = torch.randn(N, n, generator=g)
    for i, v in enumerate(specials):
        x.view(-1)[(7 * i) % x.numel()] = v
    before = w.clone()
    ssa_fast.l1_project_(w, x)
    total = x.double().abs().sum()  # (the kernels sum in float64)
    if not torch.isfinite(total) or total == 0:
        assert torch.equal(w, before)  # documented: left unchanged
    else:
        assert torch.isfinite(w).all()
        target = N / (K * float(x.double().abs().sum()))
        torch.testing.assert_close(w.double().abs().sum(1), torch.full((K,), target,
                                   dtype=torch.float64), rtol=1e-4, atol=0)


# -- files -------------------------------------------------------------------------------------

def _wav_bytes(n=1600):
    return sf_bytes(np.zeros(n, np.float32) + 0.1)


def sf_bytes(y):
    import io

    buf = io.BytesIO()
    sf.write(buf, y, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@FAST
@given(st.one_of(st.binary(max_size=300),
                 st.integers(0, 3000).map(lambda k: _wav_bytes()[:k]),
                 st.binary(min_size=1, max_size=64).map(lambda b: b"RIFF" + b)))
def test_load_of_arbitrary_bytes_named_wav(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("wav") / "x.wav"
    path.write_bytes(blob)
    try:
        y = load(path)
    except AudioError as exc:
        assert "x.wav" in str(exc)
        return
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) > 0 and np.isfinite(y).all()


def test_load_missing_and_nan_files(tmp_path):
    with pytest.raises(AudioError, match="nope.wav"):
        load(tmp_path / "nope.wav")
    path = tmp_path / "nan.wav"
    y = np.full(800, 0.1, np.float32)
    y[5] = np.nan
    sf.write(path, y, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load(path)


@FAST
@given(st.lists(st.fixed_dictionaries({
    "path": st.sampled_from(["a.wav", "missing.wav", "bad.wav", "", "sub/../a.wav"]),
    "speaker": st.sampled_from(["s1", "s2", ""]),
    "label": st.sampled_from(["neu", "hap", "???", ""])}), max_size=6))
def test_load_manifest_with_hostile_rows(tmp_path_factory, rows):
    root = tmp_path_factory.mktemp("manifest")
    sf.write(root / "a.wav", np.full(1600, 0.1, np.float32), 16000)
    (root / "bad.wav").write_bytes(b"not audio")
    (root / "manifest.json").write_text(json.dumps({"records": rows,
                                                    "classes": ["neu", "hap"]}))
    try:
        corpus = load_manifest(root / "manifest.json")
    except ValueError as exc:
        assert "manifest.json" in str(exc)
        assert not rows or any(not all(r.values()) for r in rows) or \
            all(r["label"] == "???" for r in rows)
        return
    # unknown labels and missing files are skipped and reported, every row accounted for once
    assert all(r.label in ("neu", "hap") for r in corpus)
    assert len(corpus) + len(corpus.skipped) == len(rows)
    assert all(r.path.endswith(("a.wav", "bad.wav")) for r in corpus)
    readable, waves = corpus.load_audio()  # unreadable files: reported and skipped
    assert len(readable) + len(readable.skipped) == len(rows)
    assert all(r.path.endswith("a.wav") for r in readable)
    assert all(np.isfinite(w).all() and len(w) == 1600 for w in waves)


def test_manifest_that_is_not_a_manifest(tmp_path):
    for text in ["", "{", "[1, 2]", '"x"', '{"records": 3}', "path,speaker\n"]:
        path = tmp_path / "m.json"
        if text.startswith("path"):
            path = tmp_path / "m.csv"
        path.write_text(text)
        with pytest.raises(ValueError, match=path.name):
            load_manifest(path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_corpus("manifest", tmp_path / "nowhere.csv")


# -- segments, metrics, checkpoints -------------------------------------------------------------

@FAST
@given(st.integers(-3, 2000), st.integers(-1, 400), st.one_of(st.none(), st.integers(-1, 400)))
def test_segment_bounds_cover_or_refuse(n, L, hop):
    try:
        b = segment_bounds(n, L, hop)
    except ValueError as exc:
        assert "must" in str(exc) or "need" in str(exc)
        return
    assert b and b[0][0] == 0 and all(0 < length <= L for _, length in b)
    assert all(s + length <= n for s, length in b)


@FAST
@given(st.lists(st.integers(-2, 5), min_size=1, max_size=30), st.integers(1, 5))
def test_confusion_matrix_refuses_labels_out_of_range(labels, K):
    preds = labels[::-1]
    bad = [v for v in labels + preds if not 0 <= v < K]
    if bad:
        with pytest.raises(ValueError, match="class"):
            confusion_matrix(labels, preds, K)
        return
    cm = confusion_matrix(labels, preds, K)
    assert cm.sum() == len(labels)
    assert 0 <= uar(cm) <= 1


def test_normaliser_and_segments_hostile():
    with pytest.raises(ValueError, match="normalisation"):
        Normaliser("per-speaker")
    norm = Normaliser("speaker").fit([torch.randn(3, 50, 40)], ["a"])
    with pytest.raises(ValueError, match="empty"):
        make_segments([], [], [], norm, {"a": 0})
    flat = Normaliser("utterance")(torch.zeros(3, 20, 40), "a")  # constant input: eps, no NaN
    assert torch.isfinite(flat).all()


@pytest.mark.parametrize("payload", ["pickle", "text", "tensor", "partial"])
def test_untrusted_checkpoints_are_refused(tmp_path, payload):
    path = tmp_path / "best.pt"
    if payload == "pickle":  # an object that runs code when unpickled
        import pickle

        class Evil:
            def __reduce__(self):
                return (print, ("pwned",))

        torch.save({"x": Evil()}, path, pickle_module=pickle)
    elif payload == "text":
        path.write_text("hello")
    elif payload == "tensor":
        torch.save(torch.ones(2), path)
    else:
        torch.save({"model": {}, "bundle": {"classes": ["a"]}}, path)
    with pytest.raises(ValueError, match="best.pt"):
        load_trained(path)
