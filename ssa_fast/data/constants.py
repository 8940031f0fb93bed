"""The segmentation's fixed sizes and the normalisations by name, torch-free: the command line's
parser reads them without importing torch (``segments.py`` uses them; design.md section 3)."""

NORMALISATIONS = ("speaker", "global", "utterance")
SEGMENT_FRAMES = 300  # frames per segment: 3 s at the 10 ms hop, the paper's
MIN_TAIL = 100  # a final partial segment shorter than this is dropped (unless it is the only one)
