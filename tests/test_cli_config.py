"""Configuration files (--config) and the resolved configuration a run saves: parsed by the
command line's own parser, typed options win, mistakes are one line naming the file."""

import json
from pathlib import Path

import pytest

from ssa_fast import cli, config_file
from ssa_fast.errors import UserError
from ssa_fast.train import TrainConfig

TRAIN = ["train", "synthetic", "corpus", "--out", "run"]


def _parse(argv):
    parser = cli.build_parser()
    return parser.parse_args(config_file.expand(parser, argv))


@pytest.mark.parametrize("suffix, text", [
    (".json", '{"preset": "small", "epochs": 7, "lr": 0.002, "bf16": true, "logit-scale": 30}'),
    (".yaml", "preset: small\nepochs: 7\nlr: 2.0e-3\nbf16: true\nlogit_scale: 30\n"),
    (".toml", 'preset = "small"\nepochs = 7\nlr = 0.002\nbf16 = true\nlogit_scale = 30\n'),
])
def test_config_files_set_options_and_typed_options_win(tmp_path, suffix, text):
    if suffix == ".yaml":
        pytest.importorskip("yaml")
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    args = _parse(TRAIN + ["--config", str(path)])
    assert (args.preset, args.epochs, args.lr, args.bf16, args.logit_scale) == \
        ("small", 7, 0.002, True, 30.0)
    args = _parse(TRAIN + ["--epochs", "3", "--config", str(path)])
    assert args.epochs == 3 and args.preset == "small"


def test_defaults_come_from_the_python_api():
    args = _parse(TRAIN)
    d = TrainConfig()
    for name in ("preset", "epochs", "batch_size", "lr", "speaker_weight", "logit_scale",
                 "pooling", "bn_batches", "seed", "patience"):
        assert getattr(args, name) == getattr(d, name), name
    train_parser = config_file.subparser(cli.build_parser(), "train")
    assert "--epochs EPOCHS default: 30" in " ".join(train_parser.format_help().split())


def test_cv_lists_and_a_saved_run_round_trip(tmp_path):
    path = tmp_path / "cv.json"
    path.write_text(json.dumps({"models": ["acrnn", "ssa-crnn-r"], "folds": 4,
                                "columns": {"path": "file", "label": "emotion"}}))
    argv = ["cv", "manifest", "m.csv", "--out", "o", "--config", str(path)]
    args = _parse(argv)
    assert args.models == ["acrnn", "ssa-crnn-r"] and args.folds == 4
    assert args.columns == {"path": "file", "label": "emotion"}
    # the resolved options of a run read back give the same run
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(config_file.resolved(args, cli.build_parser(), argv)))
    again = _parse(["cv", "manifest", "m.csv", "--out", "o", "--config", str(saved)])
    for key, value in vars(args).items():
        if key not in ("config", "func"):
            assert getattr(again, key) == value, key


@pytest.mark.parametrize("text, message", [
    ('{"epoch": 3}', "'epoch' is not an option of 'ssa-fast train'"),
    ('{"debug": true}', "'debug' is not an option"),
    ('{"epochs": [1, 2]}', "epochs takes one value"),
    ('{"bf16": "yes"}', "bf16 must be true or false"),
    ('[1, 2]', "expected a mapping"),
    ('{"epochs": 3', "not valid json"),
])
def test_bad_config_files_are_one_line_naming_the_file(tmp_path, capsys, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    assert cli.main(TRAIN + ["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and message in err, err


def test_bad_values_in_a_config_file_are_refused_like_typed_ones(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"lr": -1}')
    with pytest.raises(SystemExit) as exc:
        cli.main(TRAIN + ["--config", str(path)])
    assert exc.value.code == 2 and "--lr" in capsys.readouterr().err
    with pytest.raises(UserError, match="cannot read"):
        config_file.load(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_the_shipped_configs_parse_as_typed_options(path):
    pytest.importorskip("yaml")
    corpus = path.name.split("_")[0]
    args = _parse(["cv", corpus, "root", "--out", "o", "--config", str(path)])
    values = config_file.load(path)
    for key, value in values.items():
        assert getattr(args, key.replace("-", "_")) == value, key
    # the command in the file's comment names the file
    assert f"--config configs/{path.name}" in path.read_text()
