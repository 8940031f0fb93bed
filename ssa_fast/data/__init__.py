"""Corpora, segmentation, normalisation, sampling and splits (design.md sections 3 and 8).

Names are imported on first use: synthesis workers import ``ssa_fast.data.synthetic`` in fresh
processes and must not pay for torch.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["ATTHACK_ATTITUDES", "AUDIO_SUFFIXES", "Corpus", "IEMOCAP_CLASSES",
                     "MANIFEST_FIELDS", "Record", "audio_digest", "check_speakers",
                     "default_normalisation", "label_key", "load_atthack", "load_corpus",
                     "load_folder", "load_iemocap", "load_manifest", "match_classes",
                     "parse_columns"], ".corpus"),
    **dict.fromkeys(["compute_features", "corpus_features"], ".cache"),
    "BalancedBatchSampler": ".sampler",
    **dict.fromkeys(["NORMALISATIONS", "Normaliser", "Segments", "make_segments",
                     "segment_bounds"], ".segments"),
    **dict.fromkeys(["check_folds", "iemocap_session", "leave_one_session_out",
                     "leave_one_speaker_out", "linguistic_folds", "random_folds"], ".splits"),
    **dict.fromkeys(["EMOTIONS", "PHRASES", "synthesize_corpus"], ".synthetic"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
