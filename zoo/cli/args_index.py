"""Writes ``zoo/resources/cli_args_index.json``: the options of each Lightning subcommand as the live
LightningCLI parser has them, which :mod:`zoo.cli.fast_args` checks a command line against without importing
torch. ``python -m zoo.cli.listing --write-index`` runs it; ``tests/cli/test_cli_light.py`` compares."""

from __future__ import annotations

import json
from typing import Any

from zoo.cli.fast_args import INDEX
from zoo.cli.lightning import ZooCLI
from zoo.cli.parse_errors import _known_keys
from zoo.compat import parser_actions


class _Built(Exception):
    pass


class _ParserOnly(ZooCLI):
    """ZooCLI up to its parser: stops where it would read the command line."""

    def parse_arguments(self, parser: Any, args: Any) -> None:
        raise _Built(parser)


def live_index() -> dict[str, Any]:
    """{subcommand: {"options": {key: nargs}, "candidates": the keys a close match is drawn from}}."""
    try:
        _ParserOnly(args=[])
    except _Built as built:
        root = built.args[0]
    subcommands = next(a.choices for a in parser_actions(root) if isinstance(getattr(a, "choices", None), dict))
    index: dict[str, Any] = {}
    for name, sub in subcommands.items():
        options = {s[2:]: a.nargs for a in parser_actions(sub) for s in a.option_strings if s.startswith("--")}
        # the keys parse_errors draws "did you mean" from: the parser that reports an unknown key is the subcommand's
        index[name] = {"options": dict(sorted(options.items())), "candidates": sorted(set(_known_keys(sub)))}
    return index


def write_index() -> None:
    INDEX.write_text(json.dumps(live_index(), indent=1) + "\n", encoding="utf-8")
