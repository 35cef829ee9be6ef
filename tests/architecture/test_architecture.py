"""The layout promises of docs/architecture.md, checked on the source tree."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo.contract import HOOK_DEFAULTS, RENAMED, TRAIT_DEFAULTS

ZOO = Path(zoo.__file__).parent
SOURCES = sorted(ZOO.rglob("*.py"))


def test_import_layer_contracts_hold():
    """The import-linter contracts in pyproject.toml (also run by `make lint`)."""
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.skip("import-linter is not installed (the dev extra)")
    proc = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, cwd=ZOO.parent, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ZOO)))
def test_no_module_over_400_lines(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400


def test_contract_attributes_are_read_only_through_the_contract():
    names = "|".join(map(re.escape, [*TRAIT_DEFAULTS, *HOOK_DEFAULTS, *RENAMED]))
    # a datamodule's own attributes (its class_names, ...) are the data's description, not contract traits
    pattern = re.compile(rf"""getattr\((?!datamodule\b)[^,]+,\s*["']({names})["']""")
    offenders = [f"{p.relative_to(ZOO)}:{i}: {line.strip()}"
                 for p in SOURCES if p.name not in ("contract.py", "compat.py")
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not offenders, "read these with zoo.contract.trait / task_hook:\n" + "\n".join(offenders)


def test_data_reaches_the_model_at_one_place():
    calls = [f"{p.relative_to(ZOO)}:{i}" for p in SOURCES
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"\.configure_from_data\(", line) and "def configure_from_data" not in line
             and "super().configure_from_data" not in line]
    assert len(calls) == 1 and calls[0].startswith("tasks/base.py:"), calls


def test_import_zoo_is_light_and_every_public_name_resolves():
    code = ("import sys, zoo; heavy = [m for m in ('torch', 'lightning', 'transformers') if m in sys.modules]; "
            "print(','.join(heavy))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr
    for name in zoo.__all__:
        assert getattr(zoo, name) is not None, name


def test_registries_name_no_module_above_them():
    """The registries sit at the bottom of the layers. The built-ins register through the loader that
    zoo/__init__.py hands them (an import the linter sees), never through a module name in a string (one it cannot)."""
    tree = ast.parse((ZOO / "registry.py").read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.startswith("zoo")} - {"zoo.errors"}, imported
    assert "importlib" not in imported and "__import__" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    named = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
             and re.fullmatch(r"zoo(\.\w+)+", n.value)]
    assert not named, named
