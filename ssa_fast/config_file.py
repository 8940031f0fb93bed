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

JSON, YAML (.yaml / .yml, with PyYAML) and TOML (.toml) are read, exactly as written: YAML with
the YAML 1.2 core schema (``epochs: 010`` is 10, not octal 8; ``yes``, ``on`` and ``1:30`` are
strings, not a boolean and a number), and a key given twice (also as ``logit-scale`` beside
``logit_scale``) is refused. Every value is converted and checked by the option's own argparse
type and choices, as a typed value is, and becomes the option's default: an option typed on the
command line wins, and the file's values never mix with the positional arguments. The corpus
kind and root stay positional arguments of the command line.

Options are read as spelled (the command line takes no abbreviations: ``--conf`` is refused, not
read as ``--config``), and ``--config`` given twice with different files is refused rather than
one of them being dropped (another option typed twice: the last wins, as argparse has it).

A run's ``config.json`` holds every resolved option (``"options"``), the command, the corpus
and the version; ``--config OUT/config.json`` repeats the run with the same options. It records
what the run was, not how it was started: the switches ``--resume``, ``--overwrite`` and
``--restart`` are not saved, not read from a run's ``config.json`` (older ones hold them), and
refused in a file written by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from .errors import UserError

# keys of a saved run's config.json that are records, not options
RECORD_KEYS = ("command", "corpus", "root", "argv", "version", "options")
# options a file may not set: where the file itself is, the run's own switches
NOT_FROM_FILE = ("config", "debug", "help", "version")
# options typed as one comma-separated value whose resolved value is a tuple (a saved run's
# config.json holds a list): --pool T,F, --attitudes A1,A2,A3,A4
COMMA_LISTS = ("pool", "attitudes")
# what to do with an existing run, and how one invocation divides the work: typed each time,
# never saved nor read from a file (a run's config.json reused for another --out must not
# replace or continue that folder's run; a file's shard would make every cv using it a share,
# and nothing typed could then assemble the table)
WORK_SPLIT = ("shard", "jobs")
RUN_SWITCHES = ("resume", "overwrite", "restart", *WORK_SPLIT)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list) -> dict:
    """A JSON object or YAML mapping whose keys are all distinct (else the last would win)."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"{key!r} is given twice")
        out[key] = value
    return out


def _yaml_loader():
    """A safe YAML loader with the YAML 1.2 core schema's implicit types: decimal, 0o and 0x
    integers, floats, true/false, null; everything else (``010``'s octal, ``yes``/``on``,
    ``1:30``, dates) is what YAML 1.2 reads, a decimal or a string. Mapping keys are unique."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {}
    resolvers = (
        ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
        ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
        ("float", r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
                  r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)", "-+0123456789."),
        ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    )
    for tag, pattern, first in resolvers:
        Loader.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", re.compile(f"^(?:{pattern})$"),
                                     list(first))

    def integer(loader, node):
        text = loader.construct_scalar(node)
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text, 10)

    def mapping(loader, node, deep=False):
        loader.flatten_mapping(node)
        pairs = [(loader.construct_object(k, deep=deep), loader.construct_object(v, deep=deep))
                 for k, v in node.value]
        return _no_duplicates(pairs)

    Loader.add_constructor("tag:yaml.org,2002:int", integer)
    Loader.add_constructor("tag:yaml.org,2002:map", mapping)
    return Loader


def load(path: str | Path) -> dict:
    """The option mapping of a configuration file (a saved run's ``options``, without its
    RUN_SWITCHES); UserError with the file's name for a missing, unreadable or malformed file."""
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
            data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
    except UserError:
        raise
    except _DuplicateKey as exc:
        raise UserError(f"--config {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - every parser's syntax error is the user's
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"--config {path}: not valid {suffix.lstrip('.') or 'JSON'} ({first})") \
            from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of option names to values, got "
                        f"{type(data).__name__}")
    if "options" in data:  # a run's config.json: a record of the run, its options inside
        if not isinstance(data["options"], dict):
            raise UserError(f"--config {path}: 'options' must be a mapping of option names to "
                            f"values (as a run's config.json holds them), got "
                            f"{type(data['options']).__name__}")
        beside = [k for k in data if k not in RECORD_KEYS]
        if beside:  # (they would not be read: a run's record takes its options from inside)
            raise UserError(f"--config {path}: {', '.join(map(repr, beside))} beside 'options' "
                            "would not be read: a file with 'options' (a run's config.json) "
                            "takes its options from inside it; move them there")
        return {k: v for k, v in data["options"].items()
                if str(k).replace("-", "_") not in RUN_SWITCHES}
    records = [k for k in data if k in RECORD_KEYS]
    if records:  # (the command and corpus are the command line's, never a file's)
        raise UserError(f"--config {path}: {', '.join(map(repr, records))} cannot come from a "
                        "file written by hand: the command, the corpus kind and its root are "
                        "typed on the command line (ssa-fast COMMAND CORPUS ROOT --config FILE)")
    return data


def _options_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """{dest: action} of a (sub)parser's optional arguments."""
    return {a.dest: a for a in parser._actions if a.option_strings}


def _flag(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def _is_switch(action: argparse.Action) -> bool:
    return isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction)


def values(parser: argparse.ArgumentParser, data: dict, path: str | Path) -> dict:
    """{dest: value} of the options in ``data``, each converted and checked by the option's own
    type and choices (as a typed value is); UserError naming the file and the key otherwise."""
    options = _options_of(parser)
    out: dict = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        action = options.get(dest)
        if dest in RUN_SWITCHES and action is not None:
            what = ("how this invocation divides the work" if dest in WORK_SPLIT
                    else "what to do with an existing run")
            raise UserError(f"--config {path}: {key!r} cannot come from a file (it says {what}): "
                            f"type {_flag(action)} on the command line")
        if action is None or dest in NOT_FROM_FILE:
            known = sorted(d for d in options if d not in NOT_FROM_FILE + RUN_SWITCHES)
            raise UserError(f"--config {path}: {key!r} is not an option of "
                            f"'{parser.prog}' (options: {', '.join(known)})")
        if dest in out:
            raise UserError(f"--config {path}: {key!r} is given twice (as {dest} and "
                            f"{dest.replace('_', '-')})")
        if _is_switch(action):
            if not isinstance(value, bool):
                raise UserError(f"--config {path}: {key} must be true or false, got {value!r}")
            out[dest] = value
            continue
        if value is None:
            if action.default is not None:
                raise UserError(f"--config {path}: {key} cannot be null (default "
                                f"{action.default!r})")
            out[dest] = None
            continue
        if isinstance(value, dict) and dest == "columns":  # a saved run: {field: column}
            strings = [",".join(f"{k}={v}" for k, v in value.items())]
        elif isinstance(value, list | tuple) and dest in COMMA_LISTS:  # a saved run's tuple
            strings = [",".join(map(_token, value))]
        elif isinstance(value, dict):
            raise UserError(f"--config {path}: {key} takes a value, got a mapping")
        elif isinstance(value, list | tuple):
            if action.nargs not in ("+", "*"):
                raise UserError(f"--config {path}: {key} takes one value, got a list")
            if not value and action.nargs == "+":
                raise UserError(f"--config {path}: {key} needs at least one value, got []")
            if any(isinstance(v, list | tuple | dict) for v in value):
                raise UserError(f"--config {path}: {key} takes a list of values, got {value!r}")
            strings = [_token(v) for v in value]
        else:
            strings = [_token(value)]
        try:  # the option's own conversion and checks (type, choices), as for typed values
            out[dest] = parser._get_values(action, strings)
        except argparse.ArgumentError as exc:
            raise UserError(f"--config {path}: {exc}") from None
    return out


def _token(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


def _typed(sub: argparse.ArgumentParser, argv: list[str]) -> dict[str, list]:
    """{dest: [value of each occurrence]} of the options typed in ``argv`` (after the command),
    read by a parser with the same option strings (and the same refusal of abbreviations), so
    that they resolve exactly as the command's parser resolves them."""
    mirror = type(sub)(prog=sub.prog, add_help=False)
    for action in sub._actions:
        if not action.option_strings:
            continue
        if action.nargs == 0:  # switches, --help
            mirror.add_argument(*action.option_strings, dest=action.dest, action="append_const",
                                const=True, default=argparse.SUPPRESS)
        else:
            mirror.add_argument(*action.option_strings, dest=action.dest, action="append",
                                nargs=action.nargs, default=argparse.SUPPRESS)
    namespace, _ = mirror.parse_known_args(argv)
    return vars(namespace)


def apply(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """Prepare ``parser`` for ``argv``: the options of its ``--config FILE`` become the
    command's defaults (an option typed in ``argv`` wins); ``--config`` given twice with
    different files is refused. Returns the dests typed in ``argv``. Raises UserError naming
    the file."""
    command = next((a for a in argv if not a.startswith("-")), None)
    sub = subparser(parser, command) if command else None
    if sub is None:
        return set()  # the parser reports the missing or unknown command itself
    typed = _typed(sub, argv[argv.index(command) + 1:])
    options = _options_of(sub)
    if "config" in typed:
        files = list(dict.fromkeys(typed["config"]))
        if len(files) > 1:  # (other options typed twice: the last wins, as typed options do)
            raise UserError(f"--config is given {len(files)} times ({', '.join(files)}): give "
                            "one file (options typed on the command line win over it)")
        path = files[0]
        defaults = values(sub, load(path), path)
        sub.set_defaults(**defaults)
        for dest in defaults:  # a required option (--out) the file gives is given
            options[dest].required = False
    return set(typed)


def resolved(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> dict:
    """What a run's config.json holds: every option's resolved value (not the RUN_SWITCHES),
    the command and corpus."""
    from . import __version__

    sub = subparser(parser, args.command)
    options = {d: getattr(args, d) for d in _options_of(sub)
               if d not in NOT_FROM_FILE + RUN_SWITCHES and hasattr(args, d)}
    return {"command": args.command, "corpus": getattr(args, "corpus", None),
            "root": getattr(args, "root", None), "version": __version__,
            "argv": list(argv) if argv is not None else sys.argv[1:],
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}}
