"""A dependency's private API (torch, Lightning, transformers, Optuna, peft, ...) is reached only in zoo/compat.py.

The scan reads every other module of zoo with ``ast`` and reports

- an import of a private module or name from outside zoo (``from torch._dynamo import x``,
  ``from lightning.pytorch.utilities.imports import _RICH_AVAILABLE``);
- ``x._name`` (or ``getattr(x, "_name")``, ``setattr``, ``hasattr``, ``delattr``) where ``x`` is a module or
  class imported from outside zoo, or where ``_name`` is defined nowhere in zoo: zoo's own private names are the
  ones assigned as ``self._name`` / ``cls._name`` or defined in a module or class body (outside compat.py), so
  ``self._trainer`` on a LightningModule is caught while ``self._cache`` that a zoo class sets is not.
  ``compat.PRIVATE_API_ALLOWED`` names the zoo-owned attributes the scan cannot trace to a definition;
- a zoo class that defines, or sets on ``self``, a private name its dependency base class already has
  (overriding Lightning's ``_setup_model``, or shadowing ``LightningModule._trainer`` so the name check above
  would wave its uses through).

Dunder names (``__init__``, ``__dict__``) are public protocol, not private.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import zoo
from zoo import compat

ZOO = Path(zoo.__file__).parent
COMPAT = ZOO / "compat.py"
SOURCES = sorted(p for p in ZOO.rglob("*.py") if p != COMPAT)
ATTRIBUTE_FUNCTIONS = ("getattr", "setattr", "hasattr", "delattr")
#: dependency base classes cheap to build with no arguments: their instances show the private attributes their
#: ``__init__`` sets (``LightningModule._trainer``), which the class itself does not list
BUILDABLE = ("torch.nn.Module", "lightning.pytorch.LightningModule", "lightning.pytorch.LightningDataModule",
             "lightning.pytorch.Callback")

#: violations in code that another change is rewriting: ``(path, what the scan reports) -> the way out``. An entry
#: that the scan no longer finds fails the test, so each is deleted with the change that fixes it.
PENDING: dict[tuple[str, str], str] = {}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_zoo(module: str) -> bool:
    return module == "zoo" or module.startswith("zoo.")


def imported_names(tree: ast.AST) -> dict[str, str]:
    """Each name a module binds by import (at any depth) -> the dotted path it stands for; relative imports are
    zoo's own and map to ``zoo``."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    names[root] = root
        elif isinstance(node, ast.ImportFrom):
            module = "zoo" if node.level else (node.module or "")
            for alias in node.names:
                names[alias.asname or alias.name] = f"{module}.{alias.name}"
    return names


def defined_private_names(tree: ast.AST) -> set[str]:
    """The private names a zoo module defines: functions, classes, module / class / local assignments,
    ``__slots__`` entries, and attributes assigned on ``self`` or ``cls``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.add(node.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            found.add(node.attr)
        elif (isinstance(node, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets)
              and isinstance(node.value, ast.Tuple | ast.List)):
            found.update(e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return {name for name in found if is_private(name)}


def receiver_root(node: ast.expr) -> str | None:
    """The name an attribute chain starts from: ``torch`` for ``torch.nn.functional``, ``self`` for
    ``self.trainer.strategy``, None for a call's or literal's result that starts from no name."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            return None


def scan(source: str, zoo_private: set[str] | frozenset[str]) -> list[tuple[int, str]]:
    """``(line, what)`` of each reach into a private API outside zoo in one module's source (see the module
    docstring); ``zoo_private`` holds the private names zoo itself defines."""
    tree = ast.parse(source)
    imports = imported_names(tree)
    external = {name for name, target in imports.items() if not is_zoo(target)}
    found: list[tuple[int, str]] = []

    def check(line: int, receiver: ast.expr, name: str, shown: str) -> None:
        if not is_private(name):
            return
        if receiver_root(receiver) in external or name not in zoo_private:
            found.append((line, shown))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and not is_zoo(node.module):
            parts = node.module.split(".")
            if any(is_private(p) for p in parts) or any(is_private(a.name) for a in node.names):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names
                      if not is_zoo(a.name) and any(is_private(p) for p in a.name.split("."))]
        elif isinstance(node, ast.Attribute):
            check(node.lineno, node.value, node.attr, f"{ast.unparse(node.value)}.{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ATTRIBUTE_FUNCTIONS
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            name = node.args[1].value
            check(node.lineno, node.args[0], name, f"{node.func.id}({ast.unparse(node.args[0])}, {name!r})")
    return found


def zoo_private_names() -> set[str]:
    names: set[str] = set()
    for path in SOURCES:
        names |= defined_private_names(ast.parse(path.read_text(encoding="utf-8")))
    return names | set(compat.PRIVATE_API_ALLOWED)


def test_no_private_api_of_a_dependency_outside_compat():
    zoo_private = zoo_private_names()
    found = {(str(p.relative_to(ZOO)), what): line for p in SOURCES
             for line, what in scan(p.read_text(encoding="utf-8"), zoo_private)}
    offenders = [f"zoo/{path}:{line}: {what}" for (path, what), line in sorted(found.items())
                 if (path, what) not in PENDING]
    assert not offenders, ("a dependency's private API outside zoo/compat.py: add an adapter there (one function, a "
                           "docstring saying what it reaches and why, a test in tests/architecture/test_compat.py) "
                           "and call it:\n" + "\n".join(offenders))
    fixed = [f"{path}: {what}" for path, what in PENDING if (path, what) not in found]
    assert not fixed, "no longer found, delete from PENDING:\n" + "\n".join(fixed)


def test_allowed_names_are_zoos_own():
    """An allow-listed name must not be one the scan already traces, nor a dependency's (a base class's)."""
    traced = set()
    for path in SOURCES:
        traced |= defined_private_names(ast.parse(path.read_text(encoding="utf-8")))
    assert not (set(compat.PRIVATE_API_ALLOWED) & traced), "already defined in zoo: drop from PRIVATE_API_ALLOWED"
    assert all(is_private(name) for name in compat.PRIVATE_API_ALLOWED)


# -- the scan can fail ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("source, expected", [
    ("from torch._dynamo import config", "from torch._dynamo import config"),
    ("from lightning.pytorch.utilities.imports import _RICH_AVAILABLE", "_RICH_AVAILABLE"),
    ("import torch._inductor.config", "import torch._inductor.config"),
    ("import torch\ntorch._C._set_something(1)", "torch._C"),
    ("import lightning.pytorch as pl\nclass T(pl.LightningModule):\n    def f(self):\n        return self._trainer",
     "self._trainer"),
    ("def f(trial):\n    return trial._trial_id", "trial._trial_id"),
    ("def f(grad):\n    return grad._indices()", "grad._indices"),
    ("def f(tok, x):\n    tok._zoo_cache = x", "tok._zoo_cache"),
    ("def f(t):\n    return getattr(t, '_logger_connector', None)", "getattr(t, '_logger_connector')"),
    # a zoo name on an imported dependency module is still the dependency's
    ("import torch\n_helper = 1\ntorch._helper", "torch._helper"),
])
def test_scan_reports_a_private_api(source, expected):
    assert any(expected in what for _, what in scan(source, set())), scan(source, set())
    assert scan(source, set()), source


@pytest.mark.parametrize("source", [
    "class A:\n    def __init__(self):\n        self._cache = {}\n    def f(self):\n        return self._cache",
    "def _helper():\n    pass\n\n\ndef f(module):\n    return module._helper()",
    "from zoo.tasks import base\nbase._private_helper()",
    "class A:\n    __slots__ = ('_x',)\n\ndef f(a):\n    return a._x",
    "import torch\ntorch.nn.Module.__init__",
    "from zoo.compat import attached_trainer\nattached_trainer(object())",
])
def test_scan_passes_zoos_own_privates_and_dunders(source):
    tree = ast.parse(source)
    assert scan(source, defined_private_names(tree) | {"_private_helper"}) == []


# -- a zoo class does not take over a private name of its dependency base ------------------------------------
def _classes() -> dict[str, list[tuple[ast.ClassDef, dict[str, str], str]]]:
    """Every class defined in zoo (compat.py included, so that its subclasses reach Lightning's bases) by name ->
    (its definition, its module's imports, its file)."""
    found: dict[str, list[tuple[ast.ClassDef, dict[str, str], str]]] = {}
    for path in [*SOURCES, COMPAT]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports = imported_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, []).append((node, imports, str(path.relative_to(ZOO))))
    return found


def _external_bases(node: ast.ClassDef, imports: dict[str, str], classes, seen: set[str]) -> set[str]:
    """Dotted paths of the dependency classes ``node`` derives from, through zoo's own classes."""
    out: set[str] = set()
    for base in node.bases:
        dotted = ast.unparse(base)
        root, _, rest = dotted.partition(".")
        target = imports.get(root)
        if target is not None and not is_zoo(target):
            out.add(target + (f".{rest}" if rest else ""))
            continue
        name = dotted.rsplit(".", 1)[-1]
        if name in seen:
            continue
        seen.add(name)
        for parent, parent_imports, _ in classes.get(name, []):
            out |= _external_bases(parent, parent_imports, classes, seen)
    return out


def _own_private_names(node: ast.ClassDef) -> dict[str, int]:
    """Private names a class defines in its body or assigns on ``self`` in its methods -> the line."""
    names: dict[str, int] = {}
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            names.setdefault(item.name, item.lineno)
            for sub in ast.walk(item):
                if (isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store)
                        and isinstance(sub.value, ast.Name) and sub.value.id == "self"):
                    names.setdefault(sub.attr, sub.lineno)
        elif isinstance(item, ast.Assign | ast.AnnAssign):
            for target in item.targets if isinstance(item, ast.Assign) else [item.target]:
                if isinstance(target, ast.Name):
                    names.setdefault(target.id, item.lineno)
    return {name: line for name, line in names.items() if is_private(name)}


def _dependency_private_names(dotted: str) -> set[str] | None:
    module, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None  # an optional extra that is not installed here
    names = set(dir(cls))
    if dotted in BUILDABLE:
        names |= set(vars(cls()))
    return {n for n in names if is_private(n)}


def test_no_zoo_class_takes_over_a_dependency_private_name():
    classes = _classes()
    cache: dict[str, set[str] | None] = {}
    offenders = []
    for entries in classes.values():
        for node, imports, path in entries:
            if path == "compat.py":
                continue
            own = _own_private_names(node)
            if not own:
                continue
            for base in sorted(_external_bases(node, imports, classes, {node.name})):
                if base not in cache:
                    cache[base] = _dependency_private_names(base)
                theirs = cache[base] or set()
                offenders += [f"zoo/{path}:{line}: {node.name}.{name} is {base}'s" for name, line in own.items()
                              if name in theirs]
    assert not offenders, ("a zoo class overrides or sets a dependency's private name: do it in zoo/compat.py, or "
                           "rename zoo's:\n" + "\n".join(sorted(offenders)))


def test_the_class_check_can_fail():
    tree = ast.parse("import lightning.pytorch as pl\nclass T(pl.LightningModule):\n"
                     "    def f(self):\n        self._trainer = None\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef))
    bases = _external_bases(node, imported_names(tree), {}, set())
    assert bases == {"lightning.pytorch.LightningModule"}
    assert "_trainer" in set(_own_private_names(node)) & (_dependency_private_names(bases.pop()) or set())
