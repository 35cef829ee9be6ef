"""``zoo``: the command line. This module only dispatches, so ``zoo --help``, ``zoo list`` and argument errors
answer without importing torch or Lightning; each command's module is imported when that command runs.

    zoo fit --config recipes/vision/digits.yaml
    zoo test --config recipes/vision/digits.yaml --ckpt_path runs/digits/version_0/checkpoints/best.ckpt
    zoo predict --config recipes/vision/digits.yaml --ckpt_path ... > predictions.csv
    zoo list models|backbones|datasets|callbacks|datamodules|families|recipes
    zoo inspect --config recipes/text/bbc_news.yaml
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import Any

from zoo.errors import ZooError
from zoo.version import __version__

#: command -> ("module:function", one-line summary); the function takes the arguments after the command name
#: (the Lightning subcommands take the whole argument list) and returns the exit code
COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("zoo.cli.lightning:run", "train a recipe (--config R.yaml)"),
    "validate": ("zoo.cli.lightning:run", "score a checkpoint on the validation split"),
    "test": ("zoo.cli.lightning:run", "score a checkpoint on the test split and write the report"),
    "predict": ("zoo.cli.lightning:run", "write predictions of a checkpoint as CSV"),
    "ensemble": ("zoo.cli.ensemble:main",
                 "combine trained classifiers, weights fitted on validation (--runs ... --out)"),
    "list": ("zoo.cli.listing:main", "list registered models, backbones, datasets, callbacks, families, recipes"),
    "export": ("zoo.cli.export:main", "export a run to safetensors / ONNX / torch.export, verified"),
    "serve": ("zoo.cli.serve:main", "serve an export or a run over HTTP with dynamic batching"),
    "inspect": ("zoo.cli.inspect:main",
                "check a recipe's data: duplicates, leakage, conflicting and suspect labels, shift (data_report.md)"),
    "card": ("zoo.cli.card:main", "write MODEL_CARD.md (Hugging Face layout) for a run directory"),
    "tune": ("zoo.cli.tune:main", "search hyperparameters of a recipe (Optuna): best.yaml, trials.csv, plots"),
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"zoo {__version__}: train, test, predict and ship models from recipes.", "",
             "usage: zoo COMMAND [options]   (`zoo COMMAND --help` for a command's options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "ZOO_DEBUG=1 shows the traceback behind an error message."]
    return "\n".join(lines)


def _resolve(target: str) -> Any:
    module, _, fn = target.partition(":")
    return getattr(importlib.import_module(module), fn)


#: exit code of a command whose reader closed the pipe (``zoo list models | head -1``): 128 + SIGPIPE, what the
#: shell reports for a program that SIGPIPE ended
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # a reader that has gone shows here, not as a traceback at interpreter exit
    except BrokenPipeError:
        # Python ignores SIGPIPE, so a closed pipe is an exception; point stdout at devnull so that the flush at
        # exit does not raise again (the recipe of the Python docs, "Note on SIGPIPE")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    return code


def _dispatch(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("--version", "-V"):
        print(f"zoo {__version__}")
        return 0
    command = argv[0]
    if command.startswith("-"):  # LightningCLI's own top-level options (--print_config, ...)
        return _run("zoo.cli.lightning:run", argv)
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, list(COMMANDS), n=3, cutoff=0.5)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        print(f"zoo: error: unknown command {command!r}{hint} Commands: {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    target = COMMANDS[command][0]
    if command in LIGHTNING_COMMANDS:
        # a misspelt flag or a missing recipe is answered from an index, before torch and Lightning load (~10 s)
        code = _guarded(_resolve("zoo.cli.fast_args:precheck"), argv)
        return code if code is not None else _run(target, argv)
    return _run(target, argv[1:])


def _run(target: str, args: list[str]) -> int:
    return int(_guarded(_resolve(target), args) or 0)


def _guarded(fn: Any, args: list[str]) -> Any:
    """``fn(args)``, with a :class:`~zoo.errors.ZooError` printed as one line and exit code 2."""
    try:
        return fn(args)
    except ZooError as err:
        if os.environ.get("ZOO_DEBUG"):
            raise
        print(f"zoo: error: {err}", file=sys.stderr)
        return 2


def __getattr__(name: str) -> Any:
    # ZooCLI and its helpers live in zoo.cli.lightning; reaching them through zoo.cli keeps old imports working
    if name.startswith("__"):
        raise AttributeError(name)
    module = importlib.import_module("zoo.cli.lightning")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'zoo.cli' has no attribute {name!r}") from None
