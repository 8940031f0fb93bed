"""Every code block of README.md, run in order in one folder, as a user would run them.

What the test adds, and only this:
- the user's own data that the README assumes (a CSV manifest with its own column names, a
  folder per label, an IEMOCAP-shaped tree, talk.wav), made from the synthetic corpus that the
  README's own `ssa-fast synth` line writes;
- options appended to `ssa-fast` commands so that they take seconds (the last value of an option
  wins, so the README's own options are parsed and checked too): a tiny corpus, the small
  preset, 1 epoch, 2 folds;
- `--device cuda` becomes `--device cpu` when this machine has no CUDA (and its `cv --bf16`
  trains one model, SSA-CRNN-r);
- `pip install` is what CI's `.ci/install_check.sh` runs in a fresh environment (checked here
  to be the same command), and `make` targets are CI itself.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sf = pytest.importorskip("soundfile")

ROOT = Path(__file__).resolve().parents[1]
FAST = {
    "synth": ["--size", "tiny", "--phrases", "4", "--quiet"],
    "cv": ["--preset", "small", "--epochs", "1", "--folds", "2", "--batch-size", "8",
           "--segment-frames", "100", "--quiet"],
    "train": ["--preset", "small", "--epochs", "1", "--folds", "2", "--batch-size", "8",
              "--segment-frames", "100", "--quiet"],
}
COLUMNS = "path=file,label=emotion,speaker=spk"


def readme_blocks() -> list[tuple[int, str, str]]:
    """(line, language, text) of every fenced block of README.md."""
    blocks, lines = [], (ROOT / "README.md").read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)", lines[i])
        if m:
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            blocks.append((i + 1, m.group(1), "\n".join(lines[i + 1:j])))
            i = j
        i += 1
    return blocks


# ---- the user's own data, made from the README's synthetic corpus --------------------------

def _wavs(world: Path) -> list[Path]:
    return sorted((world / "synth" / "wav").glob("*.wav"))


def _labelled(world: Path):
    """(wav, speaker, emotion) of the synthetic corpus."""
    import csv

    with open(world / "synth" / "manifest.csv") as fh:
        return [(world / "synth" / r["path"], r["speaker"], r["label"])
                for r in csv.DictReader(fh)]


def make_user_data(world: Path) -> None:
    rows = _labelled(world)
    # clips.csv: other column names, paths relative to the manifest
    (world / "clips").mkdir()
    lines = ["file,emotion,spk"]
    for k, (wav, spk, emo) in enumerate(rows):
        shutil.copy(wav, world / "clips" / f"clip{k:03d}.wav")
        lines.append(f"clips/clip{k:03d}.wav,{emo},{spk}")
    (world / "clips.csv").write_text("\n".join(lines) + "\n")
    # my_clips/<label>/*.wav
    for k, (wav, _, emo) in enumerate(rows):
        (world / "my_clips" / emo).mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, world / "my_clips" / emo / f"c{k:03d}.wav")
    # IEMOCAP_full_release: 2 sessions, a female and a male speaker each, improvised dialogs
    iemocap = world / "IEMOCAP_full_release"
    by_emotion: dict[str, list[Path]] = {}
    for wav, _, emo in rows:
        by_emotion.setdefault(emo, []).append(wav)
    for s in (1, 2):
        dialog = f"Ses0{s}F_impro01"
        text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        k = 0
        for emo, wavs in sorted(by_emotion.items()):
            for gender in "FM":
                for rep in range(2):
                    turn = f"{dialog}_{gender}{k:03d}"
                    src = wavs[(4 * (s - 1) + 2 * (gender == "M") + rep) % len(wavs)]
                    dst = iemocap / f"Session{s}" / "sentences" / "wav" / dialog / f"{turn}.wav"
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, dst)
                    text += f"[{k}.0 - {k}.9]\t{turn}\t{emo}\t[2.5, 2.5, 2.5]\n\n"
                    k += 1
        ev = iemocap / f"Session{s}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        ev.parent.mkdir(parents=True, exist_ok=True)
        ev.write_text(text)
    # talk.wav: 7 s of speech
    pieces = [sf.read(w)[0] for w in _wavs(world)[:4]]
    sf.write(world / "talk.wav", np.concatenate(pieces)[:16000 * 7], 16000)


# ---- running the blocks ------------------------------------------------------------------

def _run(args: list[str], world: Path, line: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.run(args, cwd=world, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, (f"README.md line {line}: {' '.join(args)}\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def run_command(words: list[str], world: Path, line: int) -> None:
    if words[:2] == ["pip", "install"]:
        ci = (ROOT / ".ci" / "install_check.sh").read_text()
        target = words[2]
        if target == ".":  # CI installs a copy of the checkout exactly so, in a fresh venv
            assert 'pip install -q "$work/src"' in ci
        else:
            assert target == "torch" and "pip install -q torch==" in ci
        return
    if words[0] == "ssa-fast":
        args = [sys.executable, "-m", "ssa_fast.cli", *words[1:]]
    elif words[0] == "torchrun":
        # (CPU: 2 gloo processes; the distributed tests compare this with one process)
        args = [sys.executable, "-m", "torch.distributed.run", *words[1:]]
    else:
        raise AssertionError(f"README.md line {line}: no rule to run {words[0]!r}")
    sub = next((w for w in words[1:] if w in FAST), None)
    if words[0] == "torchrun":
        sub = "train"
    args += FAST.get(sub, [])
    if not torch.cuda.is_available() and "cuda" in args:
        args = ["cpu" if a == "cuda" and args[i - 1] == "--device" else a
                for i, a in enumerate(args)]
        if sub == "cv" and "--bf16" in args:
            # a GPU's line on a CPU: the one model that takes every fused op (bf16 convolutions
            # are 11-14x slower than float32 on a CPU without AVX-512)
            args += ["--models", "ssa-crnn-r"]
    if sub == "train" and "--out" in args:  # a rerun of the test in the same folder
        args.append("--overwrite")
    _run(args, world, line)


@pytest.mark.slow
def test_every_readme_block_runs_in_order(tmp_path):
    world = tmp_path
    blocks = readme_blocks()
    assert {lang for _, lang, _ in blocks} <= {"bash", "python", "yaml"}, \
        "every README block names its language (bash, python or yaml)"
    namespace: dict = {}
    ran = {"bash": 0, "python": 0, "yaml": 0}
    for line, lang, text in blocks:
        if lang == "yaml":  # a file the next commands read: its first line names it
            name = text.splitlines()[0].lstrip("# ").strip()
            (world / name).write_text(text)
        elif lang == "python":
            cwd = os.getcwd()
            os.chdir(world)
            try:
                exec(compile(text, f"README.md:{line}", "exec"), namespace)  # noqa: S102
            finally:
                os.chdir(cwd)
        else:
            for k, command in enumerate(text.splitlines()):
                words = shlex.split(command, comments=True)
                if (world / "synth" / "manifest.csv").exists() and \
                        not (world / "clips.csv").exists():
                    make_user_data(world)
                if words:
                    run_command(words, world, line + 1 + k)
        ran[lang] += 1
    # what the blocks left behind is what the README says they leave
    assert (world / "runs" / "synth" / "reports" / "table.md").exists()
    assert (world / "runs" / "one" / "config.json").exists()
    assert namespace["p"].label in namespace["clf"].classes
    assert len(namespace["ps"]) == 2
    assert namespace["p"].attention is not None  # (the README's model is SSA-CRNN-r)
    assert (world / "talk_attention.pdf").read_bytes()[:5] == b"%PDF-"
    assert ran["bash"] >= 6 and ran["python"] >= 3 and ran["yaml"] == 1
