"""A pre-check of ``zoo fit|validate|test|predict`` arguments that answers the common mistakes (a misspelt
``--trainer.KEY`` or top-level ``--KEY``, no recipe at all) in a fraction of a second, with the same message and
exit code as the full LightningCLI parser, which imports torch and Lightning before it reads a single flag.

The accepted keys come from ``zoo/resources/cli_args_index.json``, written from the live parser by ``python -m
zoo.cli.listing --write-index`` (``tests/cli/test_cli_light.py`` fails when it no longer matches). Anything the
index cannot decide (``--model.*``, ``--data.*``, ``--trainer.callbacks+=...``, ``--trainer.logger.init_args.*``,
values, help and ``--print_config``) is left to the full parser: the pre-check refuses only what it would refuse.
When a command line holds two mistakes, the full parser may name the other first (it checks values and the
recipe's model as it reads them); the pre-check names the unknown key, which the full parser names next.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError

INDEX = Path(__file__).resolve().parent.parent / "resources" / "cli_args_index.json"
#: how many values an option takes when given as ``--key value`` (argparse's nargs); others are left to the parser
_NARGS_TAKEN = {None: 1, 0: 0}
#: argparse's test of a value that only looks like an option (the parser has no option that looks like a number)
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


def close_keys(bad: str, candidates: list[str]) -> list[str]:
    """The accepted keys a mistyped ``bad`` may mean: close on the whole key, else on its last part
    (``max_epohcs`` finds ``trainer.max_epochs``)."""
    close = difflib.get_close_matches(bad, candidates, n=3, cutoff=0.75)
    if not close:
        leaf = bad.rsplit(".", 1)[-1]
        close = [c for c in candidates if difflib.SequenceMatcher(None, leaf, c.rsplit(".", 1)[-1]).ratio() > 0.8][:3]
    return close


def unknown_key_hint(bad: str, close: list[str]) -> str:
    return f"'{bad}' is not an accepted key; did you mean: {', '.join(close)}?"


def read_index() -> dict[str, Any]:
    return json.loads(INDEX.read_text(encoding="utf-8"))


def _key(token: str) -> str:
    return token[2:].split("=", 1)[0]


def _option_like(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NEGATIVE_NUMBER.match(token)


def _leave_to_parser(args: list[str]) -> bool:
    """Help, --print_config, debug mode or a token argparse reads in a way the pre-check does not follow."""
    if os.environ.get("JSONARGPARSE_DEBUG"):
        return True
    for token in args:
        if not _option_like(token):
            continue
        if not token.startswith("--") or token == "--":
            return True  # -h, short options, the end-of-options marker
        key = _key(token)
        if key in ("help", "print_config") or key.endswith(".help"):
            return True
    return False


def _unknown(key: str, options: dict[str, Any]) -> bool | None:
    """True: the parser refuses ``--key``; False: it takes it; None: only the parser can tell."""
    if key in options:
        return False
    if "+" in key:
        return None  # --trainer.callbacks+=...: appends to a list option
    head, dot, rest = key.partition(".")
    if not dot:
        return True
    if head == "trainer" and "." not in rest:
        return True  # every Trainer argument is an option of its own
    return None  # --model.init_args.lr, --trainer.logger.init_args.x, ...: the value's class decides


def _unrecognized(args: list[str], options: dict[str, Any]) -> list[str] | None:
    """The arguments argparse would leave unrecognised, in order ([] when none), or None when unsure."""
    extras: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not _option_like(token):
            extras.append(token)  # a value no option took (the subcommands have no positional arguments)
            continue
        key = _key(token)
        unknown = _unknown(key, options)
        if unknown:
            extras.append(token)
            continue
        if "=" in token:
            continue
        if unknown is None:
            taken = 1  # a nested key takes one value, as the option it belongs to
        elif options[key] == "?":
            taken = 1 if i < len(args) and not _option_like(args[i]) else 0
        elif options[key] in _NARGS_TAKEN:
            taken = _NARGS_TAKEN[options[key]]
        else:
            return None
        if taken and (i >= len(args) or _option_like(args[i])):
            return None  # "expected one argument": the parser's own message
        i += taken
    return extras


def _config_files(args: list[str]) -> bool:
    return any(a == "--config" or a.startswith("--config=") for a in args)


def _model_given(args: list[str]) -> bool:
    return any(_option_like(a) and (_key(a) == "model" or _key(a).startswith("model.")) for a in args)


def precheck(argv: list[str]) -> int | None:
    """``argv`` is ``[command, *args]``. Prints the error and returns 2 for a mistake the full parser would
    refuse in the same words; None leaves the command to it."""
    command, args = argv[0], argv[1:]
    if _leave_to_parser(args):
        return None
    # a missing or broken --config is the first thing zoo.cli.lightning.run reports
    from zoo.cli.resume import check_config_files

    check_config_files(argv)
    entry = read_index().get(command)
    if entry is None:
        return None
    extras = _unrecognized(args, entry["options"])
    if extras is None:
        return None
    if extras:
        return _report_unrecognized(command, extras, entry["candidates"])
    if not _config_files(args) and not _model_given(args):
        raise ConfigError(f"no recipe: `zoo {command}` needs --config RECIPE.yaml (`zoo list recipes` shows the "
                          "shipped ones), or --model NAME and --data NAME (`zoo list models`, `zoo list datamodules`)")
    return None


def _report_unrecognized(command: str, extras: list[str], candidates: list[str]) -> int | None:
    # the words of zoo.cli.parse_errors.ZooArgumentParser.error for jsonargparse's "unrecognized arguments"
    message = f"unrecognized arguments: {' '.join(extras)}"
    lines = [message]
    first = extras[0]
    if first.startswith("--"):
        bad = re.match(r"--([\w.\-]+)", first)
        if bad is None or bad.group(1) in candidates:
            return None
        close = close_keys(bad.group(1), candidates)
        if close:
            lines = [unknown_key_hint(bad.group(1), close), message]
    prog = f"{os.path.basename(sys.argv[0])} {command}"  # argparse's prog, as the full parser prints it
    sys.stderr.write(f"{prog}: error: " + "\n".join(lines) + "\n")
    sys.stderr.write(f"Run `{prog} --help` for the accepted keys (`--model.help CLASS` for a model's).\n")
    return 2
