"""Configuration files of the command line: ``--config FILE`` and the ``config.json`` every
``train`` and ``cv`` run writes.

A file maps option names to values, the same names as the command line's long options (dashes or
underscores: ``logit_scale`` or ``logit-scale``) and, for the training options, as the fields of
:class:`ssa_fast.train.TrainConfig`::

    # run.yaml                                  # run.json
    preset: paper                               {"preset": "paper", "epochs": 30,
    epochs: 30                                   "models": ["acrnn", "ssa-crnn-r"],
    models: [acrnn, ssa-crnn-r]                  "bf16": true}
    bf16: true

JSON, YAML (.yaml / .yml, with PyYAML) and TOML (.toml) are read. The file's values become the
options' defaults: an option given on the command line wins. They are turned into command-line
tokens and parsed by the same parser, so a file is checked exactly as typed options are (types,
ranges, choices). The corpus kind and root stay positional arguments of the command line.

A run's ``config.json`` holds every resolved option (``"options"``), the command, the corpus
and the version; ``--config OUT/config.json`` repeats the run with the same options.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import UserError

# keys of a saved run's config.json that are records, not options
RECORD_KEYS = ("command", "corpus", "root", "argv", "version", "options")
# options a file may not set: where the file itself is, the run's own switches
NOT_FROM_FILE = ("config", "debug", "help", "version")


def load(path: str | Path) -> dict:
    """The option mapping of a configuration file (a saved run's ``options``); UserError with the
    file's name for a missing, unreadable or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise UserError(f"--config {path}: YAML needs PyYAML (pip install pyyaml), "
                                "or write the file as JSON") from None
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - every parser's syntax error is the user's
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"--config {path}: not valid {suffix.lstrip('.') or 'JSON'} ({first})") \
            from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of option names to values, got "
                        f"{type(data).__name__}")
    if isinstance(data.get("options"), dict):  # a run's config.json
        data = data["options"]
    else:
        data = {k: v for k, v in data.items() if k not in RECORD_KEYS}
    return data


def _options_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """{dest: action} of a (sub)parser's optional arguments."""
    return {a.dest: a for a in parser._actions if a.option_strings}


def to_argv(parser: argparse.ArgumentParser, values: dict, path: str | Path) -> list[str]:
    """Command-line tokens for the options in ``values`` (to be parsed before the typed ones)."""
    options = _options_of(parser)
    argv: list[str] = []
    for key, value in values.items():
        dest = str(key).replace("-", "_")
        action = options.get(dest)
        if action is None or dest in NOT_FROM_FILE:
            known = sorted(d for d in options if d not in NOT_FROM_FILE)
            raise UserError(f"--config {path}: {key!r} is not an option of "
                            f"'{parser.prog}' (options: {', '.join(known)})")
        flag = max(action.option_strings, key=len)
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            if not isinstance(value, bool):
                raise UserError(f"--config {path}: {key} must be true or false, got {value!r}")
            if value != action.default:
                argv.append(flag)
        elif value is None:
            if action.default is not None:
                raise UserError(f"--config {path}: {key} cannot be null (default "
                                f"{action.default!r})")
        elif isinstance(value, list | tuple):
            if action.nargs not in ("+", "*"):
                raise UserError(f"--config {path}: {key} takes one value, got a list")
            argv += [flag, *map(str, value)]
        elif isinstance(value, dict) and dest == "columns":  # a saved run: {field: column}
            argv += [flag, ",".join(f"{k}={v}" for k, v in value.items())]
        elif isinstance(value, dict):
            raise UserError(f"--config {path}: {key} takes a value, got a mapping")
        else:
            argv += [flag, _token(value, action)]
    return argv


def _token(value, action: argparse.Action) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


def expand(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with the options of its ``--config FILE`` inserted before the typed ones."""
    if "--config" not in argv and not any(a.startswith("--config=") for a in argv):
        return argv
    command = next((a for a in argv if not a.startswith("-")), None)
    sub = subparser(parser, command) if command else None
    if sub is None or "config" not in _options_of(sub):
        return argv  # the parser reports the misplaced option itself
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv[argv.index(command) + 1:])
    if not known.config:
        return argv
    tokens = to_argv(sub, load(known.config), known.config)
    at = argv.index(command) + 1
    return argv[:at] + tokens + argv[at:]


def resolved(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> dict:
    """What a run's config.json holds: every option's resolved value, the command and corpus."""
    from . import __version__

    sub = subparser(parser, args.command)
    options = {d: getattr(args, d) for d in _options_of(sub) if d not in NOT_FROM_FILE
               and hasattr(args, d)}
    return {"command": args.command, "corpus": getattr(args, "corpus", None),
            "root": getattr(args, "root", None), "version": __version__,
            "argv": list(argv) if argv is not None else sys.argv[1:],
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}}
