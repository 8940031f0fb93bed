import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The tiny synthetic corpus (2 speakers x 4 phrases x 4 emotions), made by the CLI."""
    root = tmp_path_factory.mktemp("tiny4") / "corpus"
    proc = subprocess.run([sys.executable, "-m", "ssa_fast.cli", "synth", "--out", str(root),
                           "--size", "tiny", "--phrases", "4", "--quiet"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return root
