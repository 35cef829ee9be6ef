"""``zoo list KIND [PATTERN]``: read from a generated index, so listing needs neither torch nor Lightning.

The index (``zoo/resources/registry_index.json``) is written by ``python -m zoo.cli.listing --write-index`` from
the live registries; ``tests/test_cli_light.py`` fails when it no longer matches them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path

INDEX = Path(__file__).resolve().parent.parent / "resources" / "registry_index.json"
KINDS = ("models", "backbones", "datasets", "callbacks", "datamodules")
LIST_KINDS = (*KINDS, "recipes")


def recipe_roots() -> list[Path]:
    here = Path.cwd() / "recipes"
    repo = Path(__file__).resolve().parent.parent.parent / "recipes"
    return [p for p in dict.fromkeys([here, repo]) if p.is_dir()]


def list_recipes() -> list[str]:
    out: list[str] = []
    for root in recipe_roots():
        out += [str(p.relative_to(root.parent)) for p in sorted(root.rglob("*.yaml"))
                if p.name != "results.yaml" and "search" not in p.relative_to(root).parts]  # tune spaces: zoo tune
    return sorted(dict.fromkeys(out))


def live_index() -> dict[str, list[dict[str, str]]]:
    """What the registries hold now (imports every built-in module, so torch)."""
    from zoo import registry

    regs = {"models": registry.MODELS, "backbones": registry.BACKBONES, "datasets": registry.DATASETS,
            "callbacks": registry.CALLBACKS, "datamodules": registry.DATAMODULES}
    index: dict[str, list[dict[str, str]]] = {}
    for kind, reg in regs.items():
        rows = []
        for e in reg.entries():
            target = f"{e.fn.__module__}.{e.fn.__qualname__}" if isinstance(e.fn, type) else ""
            rows.append({"name": e.name, "summary": e.summary, "target": target})
        index[kind] = rows
    return index


def read_index() -> dict[str, list[dict[str, str]]]:
    return json.loads(INDEX.read_text(encoding="utf-8"))


def write_index() -> None:
    INDEX.write_text(json.dumps(live_index(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    if argv == ["--write-index"]:
        write_index()
        print(f"wrote {INDEX}")
        return 0
    parser = argparse.ArgumentParser(prog="zoo list", description="List what zoo has registered.", allow_abbrev=False)
    parser.add_argument("kind", choices=LIST_KINDS)
    parser.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'resnet*'")
    args = parser.parse_args(argv)
    if args.kind == "recipes":
        for name in list_recipes():
            print(name)
        return 0
    rows = [r for r in read_index()[args.kind] if fnmatch.fnmatch(r["name"], args.pattern)]
    width = max([len(r["name"]) for r in rows] + [4])
    for r in rows:
        extra = f"  [{r['target']}]" if r["target"] else ""
        print(f"{r['name']:<{width}}  {r['summary']}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
