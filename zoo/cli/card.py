"""``zoo card RUN_DIR``: write RUN_DIR/MODEL_CARD.md (Hugging Face layout) from the reports a run left behind."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from zoo.errors import ConfigError

    parser = argparse.ArgumentParser(prog="zoo card", description=__doc__, allow_abbrev=False)
    parser.add_argument("run_dir", type=Path, help="a run directory (runs/<recipe>/version_N) or its test/ folder")
    parser.add_argument("--card", type=Path, default=None,
                        help="YAML with intended_use, limitations, license, summary (overrides the recipe's card:)")
    parser.add_argument("--name", default=None, help="model name in the card (default: the recipe's)")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        raise ConfigError(f"RUN_DIR {args.run_dir} is not a directory; give a run directory such as "
                          "runs/<recipe>/version_0")
    import yaml

    from zoo.reporting.card import collect, render, write_model_card
    from zoo.reporting.io import atomic_write_text

    found = (next(args.run_dir.rglob(n), None) for n in ("config.yaml", "hparams.yaml", "metrics.csv",
                                                          "test_metrics.json"))
    if not any(found):  # (a generator of rglob generators was always true: an empty folder got a card)
        raise ConfigError(f"RUN_DIR {args.run_dir} holds no run (no config.yaml, hparams.yaml or metrics); give a "
                          "directory written by zoo fit or zoo test")
    if args.card is None:
        path = write_model_card(args.run_dir, name=args.name)
    else:
        try:
            extra = yaml.safe_load(args.card.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"--card {args.card}: {err}") from None
        if not isinstance(extra, dict):
            raise ConfigError(f"--card {args.card} must be a YAML mapping (intended_use: ..., "
                              "limitations: ...)")
        info = collect([args.run_dir])
        info["card"] = {**(info["card"] or {}), **extra}
        name = args.name or str(info["card"].get("name") or "")
        from zoo.reporting.card import _run_name

        path = atomic_write_text(args.run_dir / "MODEL_CARD.md", render(info, name or _run_name(args.run_dir)))
    print(f"zoo: wrote {path}", file=sys.stderr)
    return 0
