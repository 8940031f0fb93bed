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
    """What main() parses: the --config file applied to the parser, then the typed options."""
    parser = cli.build_parser()
    config_file.apply(parser, argv)
    return parser.parse_args(argv)


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
    assert cli.main(TRAIN + ["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err
    assert "--lr: expected a finite number > 0, got '-1'" in err
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


# --- options read exactly as written, or refused in one line -------------------------------

def _refused(capsys, argv, *parts):
    """main() refuses argv with one line containing parts, exit 2 (the parser's own errors
    exit through SystemExit, as from the console script)."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, (part, err)
    return err


@pytest.mark.parametrize("spelling", ["--config", "--config="])
def test_a_config_file_is_read_under_both_spellings(tmp_path, capsys, spelling):
    """The file is read as --config FILE and --config=FILE (its --folds 2 and --fold 5 are what
    the run refuses, before any work)."""
    path = tmp_path / "run.yaml"
    path.write_text("folds: 2\nfold: 5\n")
    option = [spelling + str(path)] if spelling.endswith("=") else [spelling, path]
    _refused(capsys, ["train", "folder", tmp_path, "--out", tmp_path / "o", *option],
             "--fold must be in [0, 2) for 2 folds, got 5")
    assert not (tmp_path / "o").exists()
    args = _parse(["train", "folder", "root", "--out", "o", *map(str, option)])
    assert (args.folds, args.fold) == (2, 5)


@pytest.mark.parametrize("argv, option", [
    (["cv", "folder", "{tmp}", "--out", "{tmp}/o", "--fold", "3"], "--fold"),
    (["cv", "folder", "{tmp}", "--out", "{tmp}/o", "--epoch", "3"], "--epoch"),
    (["train", "folder", "{tmp}", "--out", "{tmp}/o", "--conf", "{tmp}/run.yaml"], "--conf"),
    (["train", "folder", "{tmp}", "--out", "{tmp}/o", "--conf={tmp}/run.yaml"], "--conf"),
])
def test_abbreviated_options_are_refused_not_read_as_another(tmp_path, capsys, argv, option):
    """argparse's abbreviations read `cv --fold 3` (one fold, in train's words) as --folds 3, a
    3-fold cross-validation; options are read as spelled."""
    (tmp_path / "run.yaml").write_text("epochs: 2\n")
    argv = [a.format(tmp=tmp_path) for a in argv]
    _refused(capsys, argv, "unrecognized arguments", option)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["train", "cv", "synth"])
def test_a_negative_seed_is_one_line(tmp_path, capsys, command):
    argv = [command, "folder", tmp_path, "--out", tmp_path / "o", "--seed", "-1"]
    if command == "synth":
        argv = ["synth", "--out", tmp_path / "o", "--seed", "-1"]
    _refused(capsys, argv, "--seed", "expected an integer >= 0, got '-1'")


def test_a_file_never_drops_what_it_says(tmp_path, capsys):
    """A run's record (options under 'options') takes nothing beside them; a file written by
    hand may not name the command, corpus or root (they were dropped without a word)."""
    train = ["train", "folder", tmp_path, "--out", tmp_path / "o", "--config"]
    record = tmp_path / "config.json"
    record.write_text(json.dumps({"command": "train", "options": {"bf16": True}, "epochs": 5,
                                  "lr": 0.5}))
    _refused(capsys, [*train, record], str(record), "'epochs', 'lr' beside 'options' would not "
             "be read")
    record.write_text(json.dumps({"options": ["bf16"]}))
    _refused(capsys, [*train, record], "'options' must be a mapping")
    hand = tmp_path / "hand.yaml"
    hand.write_text("corpus: iemocap\nroot: /data/IEMOCAP\nepochs: 3\n")
    _refused(capsys, [*train, hand], str(hand), "'corpus', 'root' cannot come from a file")
    # how one invocation divides the work is typed each time: a file's shard made every cv
    # using it a share, which nothing typed could undo to assemble the table
    for line in ("shard: 0/2", "jobs: 2"):
        hand.write_text(line + "\n")
        _refused(capsys, ["cv", "folder", tmp_path, "--out", tmp_path / "o", "--config", hand],
                 f"'{line.split(':')[0]}' cannot come from a file (it says how this "
                 "invocation divides the work)")
    assert not (tmp_path / "o").exists()
    # a run's own config.json is still read, records and all
    record.write_text(json.dumps({"command": "cv", "corpus": "iemocap", "root": "/data",
                                  "version": "0.1.0", "argv": [], "options": {"epochs": 4}}))
    assert _parse(["train", "folder", "r", "--out", "o", "--config", str(record)]).epochs == 4


def test_several_config_files_are_refused_not_dropped(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"epochs": 3}')
    b.write_text('{"lr": 0.1}')
    train = ["train", "folder", tmp_path, "--out", tmp_path / "o"]
    _refused(capsys, train + ["--config", a, "--config", b], "--config is given 2 times",
             str(a), str(b))
    assert not (tmp_path / "o").exists()
    # the same file twice loses nothing; a typed option given twice: the last wins
    args = _parse(["train", "folder", "r", "--out", "o", "--config", str(a), "--config", str(a),
                   "--lr", "0.5", "--lr", "0.25"])
    assert (args.epochs, args.lr) == (3, 0.25)


def test_list_values_of_a_file_never_take_the_positional_arguments(tmp_path):
    path = tmp_path / "cv.yaml"
    path.write_text("folds: 4\nmodels: [acrnn, acrnn-r]\n")
    for argv in (["cv", "folder", "root", "--out", "o", "--config", str(path)],
                 ["cv", "--config", str(path), "folder", "root", "--out", "o"]):
        args = _parse(argv)
        assert (args.corpus, args.root, args.models, args.folds) == \
            ("folder", "root", ["acrnn", "acrnn-r"], 4)


def test_a_config_file_can_give_the_required_out(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"out": "runs/a", "epochs": 2}')
    args = _parse(["train", "folder", "root", "--config", str(path)])
    assert (args.out, args.epochs) == ("runs/a", 2)
    assert _parse(["train", "folder", "root", "--config", str(path), "--out", "b"]).out == "b"


def test_yaml_is_read_as_yaml_1_2(tmp_path, capsys):
    """YAML 1.1's octal 010, yes/on booleans and 1:30 sexagesimals are not what anyone means
    in a configuration file: read as YAML 1.2 (decimal 10, strings), so a string where a
    number or a switch is wanted is refused like a typed one."""
    pytest.importorskip("yaml")
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 010\nfolds: 0x0a\nlr: 1e-3\nseed: +07\ntrain_hop: ~\n"
                    "bf16: true\nlogit_scale: .5\n")
    args = _parse(["train", "folder", "root", "--out", "o", "--config", str(path)])
    assert (args.epochs, args.folds, args.lr, args.seed, args.train_hop, args.bf16,
            args.logit_scale) == (10, 10, 0.001, 7, None, True, 0.5)
    train = ["train", "folder", tmp_path, "--out", tmp_path / "o", "--config", path]
    for text, parts in [("bf16: yes\n", ["bf16 must be true or false, got 'yes'"]),
                        ("compile: on\n", ["compile must be true or false, got 'on'"]),
                        ("epochs: 1:30\n", ["--epochs", "got '1:30'"]),
                        ("epochs: 3\nepochs: 4\n", ["'epochs' is given twice"]),
                        ("logit_scale: 3\nlogit-scale: 4\n", ["given twice"]),
                        ("epochs: 10.0\n", ["--epochs", "got '10.0'"])]:
        path.write_text(text)
        _refused(capsys, train, str(path), *parts)


def test_json_keys_given_twice_are_refused(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text('{"epochs": 3, "epochs": 4}')
    _refused(capsys, ["train", "folder", tmp_path, "--out", tmp_path / "o", "--config", path],
             str(path), "'epochs' is given twice")


def test_a_saved_config_records_the_run_not_how_to_clobber_another(tmp_path, capsys):
    """--overwrite and --resume say what to do with one --out: a run's config.json does not
    keep them (older ones that do are read without them), a hand-written file may not set
    them, and reusing a run's options for another --out leaves that folder's run alone."""
    argv = ["train", "folder", "root", "--out", "a", "--overwrite", "--epochs", "3"]
    saved = config_file.resolved(_parse(argv), cli.build_parser(), argv)
    assert saved["options"]["epochs"] == 3
    assert not {"overwrite", "resume", "restart"} & set(saved["options"])
    cv_argv = ["cv", "folder", "root", "--out", "a", "--restart"]
    assert "restart" not in config_file.resolved(_parse(cv_argv), cli.build_parser(),
                                                 cv_argv)["options"]
    # a config.json of an older version, which kept them
    saved["options"].update(overwrite=True, resume=True)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved))
    other = tmp_path / "other"
    other.mkdir()
    (other / "best.pt").write_bytes(b"another model")
    _refused(capsys, ["train", "folder", tmp_path, "--config", path, "--out", other],
             f"--out {other} is not empty")
    assert (other / "best.pt").read_bytes() == b"another model"
    args = _parse(["train", "folder", "root", "--config", str(path), "--out", "b"])
    assert (args.overwrite, args.resume, args.epochs) == (False, False, 3)
    for key in ("overwrite", "resume"):
        hand = tmp_path / f"{key}.yaml"
        hand.write_text(f"{key}: true\n")
        _refused(capsys, ["train", "folder", tmp_path, "--out", other, "--config", hand],
                 str(hand), f"type --{key} on the command line")


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    _refused(capsys, ["train", "folder", tmp_path, "--out", tmp_path / "o", "--resume",
                      "--overwrite"], "--resume and --overwrite")


def test_options_that_mean_nothing_for_the_run_are_refused_not_ignored(tmp_path, capsys):
    for option in ("--merge-excited", "--scripted"):
        _refused(capsys, ["train", "folder", tmp_path, "--out", tmp_path / "o", option],
                 f"{option}: applies to the iemocap corpus, not 'folder'")
    assert not (tmp_path / "o").exists()


def test_the_models_options_reach_the_run_and_round_trip(tmp_path):
    """The paper's named options (design.md sections 4-5: pool (2, 4), dropout, SSA's combine
    and scale, a constrained speaker classifier) are options of train and cv, from the command
    line or a file, and a saved run's config.json gives them back."""
    argv = ["cv", "folder", "root", "--out", "o", "--pool", "2,4", "--dropout", "0.1",
            "--combine", "sum", "--ssa-scale", "0.05", "--constrain-speaker"]
    args = _parse(argv)
    assert (args.pool, args.dropout, args.combine, args.ssa_scale, args.constrain_speaker) == \
        ((2, 4), 0.1, "sum", 0.05, True)
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(config_file.resolved(args, cli.build_parser(), argv)))
    again = _parse(["cv", "folder", "root", "--out", "o", "--config", str(saved)])
    assert (again.pool, again.dropout, again.combine, again.ssa_scale,
            again.constrain_speaker) == ((2, 4), 0.1, "sum", 0.05, True)
    # --attitudes, the other comma-separated option: a saved run's list reads back
    args = _parse(["cv", "atthack", "root", "--out", "o", "--attitudes", "w,x,y,z"])
    saved.write_text(json.dumps(config_file.resolved(args, cli.build_parser(), argv)))
    assert _parse(["cv", "atthack", "root", "--out", "o", "--config", str(saved)]).attitudes \
        == ("w", "x", "y", "z")
    hand = tmp_path / "run.yaml"
    hand.write_text("pool: 2,4\ncombine: sum\n")
    assert _parse(["train", "folder", "r", "--out", "o", "--config", str(hand)]).pool == (2, 4)
    for bad in (["--pool", "2"], ["--pool", "0,2"], ["--dropout", "1"], ["--combine", "max"]):
        with pytest.raises(SystemExit):
            _parse(["train", "folder", "r", "--out", "o", *bad])


def test_model_options_that_cannot_apply_are_one_line_before_any_work(tmp_path, capsys):
    """A pool that leaves no frame or band failed with a traceback after the feature
    extraction; --constrain-speaker without SSA-CRNN-r (the one model it changes) did
    nothing."""
    (tmp_path / "a").mkdir()
    for label in ("a", "b"):
        (tmp_path / label).mkdir(exist_ok=True)
        (tmp_path / label / "x.wav").write_bytes(b"RIFF")
    train = ["train", "folder", tmp_path, "--out", tmp_path / "o", "--model", "acrnn"]
    _refused(capsys, [*train, "--pool", "2,64"], "--pool 2,64: a frequency pool of 64 bands "
             "is wider than the features (--n-mels 40)")
    _refused(capsys, [*train, "--pool", "400,2"], "--pool 400,2: a time pool of 400 frames is "
             "longer than the segments (--segment-frames 300)")
    _refused(capsys, [*train, "--constrain-speaker"], "--constrain-speaker: applies to "
             "ssa-crnn-r")
    _refused(capsys, ["cv", "folder", tmp_path, "--out", tmp_path / "o", "--models", "acrnn",
                      "ssa-crnn", "--constrain-speaker"], "not to acrnn, ssa-crnn")
    assert not (tmp_path / "o").exists()

