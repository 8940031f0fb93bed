"""The models' named choices that need no torch: the command line's parser reads them without
importing it (``scoring.py`` and the checkpoints use them)."""

POOLINGS = ("mean", "max")  # an utterance's decision from its segments (utterance_probabilities)
