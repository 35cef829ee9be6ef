"""``zoo list KIND [PATTERN]``: read from a generated index, so listing needs neither torch nor Lightning.

PATTERN is a task family (``recsys``, ``text``, ``image``/``vision``: the entries' tags), a piece of the name or
summary (case does not matter), or a glob on the name or a tag (``'resnet*'``). Nothing matching is an error (exit
code 2) that lists what there is.

The index (``zoo/resources/registry_index.json``) is written by ``python -m zoo.cli.listing --write-index`` from
the live registries, with ``cli_args_index.json`` (the flags :mod:`zoo.cli.fast_args` checks);
``tests/cli/test_cli_light.py`` fails when either no longer matches.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

INDEX = Path(__file__).resolve().parent.parent / "resources" / "registry_index.json"
KINDS = ("models", "backbones", "datasets", "callbacks", "datamodules", "families")
LIST_KINDS = (*KINDS, "recipes")
#: tags that name the same family: models and datasets say "image", backbones "vision"
SAME_FAMILY = {"vision": "image"}


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
            rows.append({"name": e.name, "summary": e.summary, "target": target, "tags": list(e.tags)})
        index[kind] = rows
    # export families (zoo.inference.family): what zoo export / zoo serve can read and answer
    from zoo.inference import FAMILIES

    index["families"] = []
    for name in FAMILIES:
        cls = FAMILIES.get(name)
        if not cls.__module__.startswith("zoo."):  # the index lists what zoo ships, not what a process registered
            continue
        index["families"].append({"name": name, "summary": f"{cls.task}: {cls.summary}",
                                  "target": f"{cls.__module__}.{cls.__qualname__}", "tags": [cls.task]})
    return index


def read_index() -> dict[str, list[dict[str, str]]]:
    return json.loads(INDEX.read_text(encoding="utf-8"))


def write_index() -> None:
    INDEX.write_text(json.dumps(live_index(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    # the flags zoo.cli.fast_args checks fit/validate/test/predict command lines against
    from zoo.cli import args_index

    args_index.write_index()


def _family(word: str) -> str:
    return SAME_FAMILY.get(word.lower(), word.lower())


def matches(row: dict[str, Any], pattern: str) -> bool:
    """Whether an index row answers ``zoo list KIND PATTERN`` (see the module docstring)."""
    tags = [str(t) for t in row.get("tags", [])]
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatch(row["name"], pattern) or any(fnmatch.fnmatch(t, pattern) for t in tags)
    word = pattern.lower()
    return (_family(word) in {_family(t) for t in tags} or word in row["name"].lower()
            or word in row["summary"].lower())


def _no_match(kind: str, pattern: str, known: str) -> ZooError:
    return ZooError(f"no {kind[:-1]} matches {pattern!r}; {known} (`zoo list {kind}` shows them all)")


def main(argv: list[str]) -> int:
    if argv == ["--write-index"]:
        write_index()
        print(f"wrote {INDEX} and {INDEX.parent / 'cli_args_index.json'}")
        return 0
    parser = argparse.ArgumentParser(prog="zoo list", description="List what zoo has registered.", allow_abbrev=False)
    parser.add_argument("kind", choices=LIST_KINDS)
    parser.add_argument("pattern", nargs="?", default="*",
                        help="a task family (recsys, text, image), part of a name or summary, or a glob: 'resnet*'")
    args = parser.parse_args(argv)
    if args.kind == "recipes":
        recipes = list_recipes()
        rows = [{"name": r, "summary": "", "tags": r.split("/")[1:-1]} for r in recipes]
        names = [r["name"] for r in rows if matches(r, args.pattern)]
        if not names:
            folders = sorted({str(Path(r).parent) for r in recipes})
            raise _no_match("recipes", args.pattern, f"folders: {', '.join(folders)}")
        for name in names:
            print(name)
        return 0
    everything = read_index()[args.kind]
    rows = [r for r in everything if matches(r, args.pattern)]
    if not rows:
        families = sorted({_family(t) for r in everything for t in r.get("tags", [])})
        known = f"known: {', '.join(r['name'] for r in everything)}"
        raise _no_match(args.kind, args.pattern, known + (f"; tags: {', '.join(families)}" if families else ""))
    width = max([len(r["name"]) for r in rows] + [4])
    for r in rows:
        extra = f"  [{r['target']}]" if r["target"] else ""
        print(f"{r['name']:<{width}}  {r['summary']}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
