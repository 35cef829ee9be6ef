"""Every test can fail. ``zoo.cli.main`` returns an exit code (2 on a ZooError or OSError) instead of raising, so
a test that calls it and drops the result passes when the run it checks failed. This scan of every file under
tests/ finds a call to a function named ``main`` whose result is thrown away: an expression statement, or a name
bound to it and never read. A call inside ``with pytest.raises(...)`` is exempt: there the exit is the exception."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
FILES = sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _is_main_call(node: ast.AST | None) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "main") or (
        isinstance(func, ast.Attribute) and func.attr == "main")


def _inside_raises(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
            return False
        if isinstance(node, ast.With) and any(
                isinstance(item.context_expr, ast.Call) and ast.unparse(item.context_expr.func).endswith("raises")
                for item in node.items):
            return True
    return False


def _scope(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> ast.AST:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
            return node
    return node


def unchecked_main_calls(source: str) -> list[int]:
    """Line numbers of the calls to ``main`` whose result nothing looks at."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and _is_main_call(node.value) and not _inside_raises(node, parents):
            lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and _is_main_call(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            read = {n.id for n in ast.walk(_scope(node, parents))
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            if names and not names & read:
                lines.append(node.lineno)
    return sorted(lines)


def test_every_cli_run_in_the_tests_has_its_exit_code_checked():
    dropped = {p.relative_to(TESTS.parent).as_posix(): lines for p in FILES
               if (lines := unchecked_main_calls(p.read_text(encoding="utf-8")))}
    assert dropped == {}, ("main(...) has its exit code dropped at these lines; write `assert main([...]) == 0` "
                           "(or `== 2` and check the message)")


SNIPPETS = {
    "dropped": ("main(['fit'])\n", [1]),
    "dropped, attribute": ("import zoo.cli\nzoo.cli.main(['fit'])\n", [2]),
    "bound and never read": ("def test():\n    rc = main(['fit'])\n    assert True\n", [2]),
    "asserted": ("def test():\n    assert main(['fit']) == 0\n", []),
    "bound and checked": ("def test():\n    rc = main(['fit'])\n    assert rc == 2\n", []),
    "inside pytest.raises": ("import pytest\nwith pytest.raises(SystemExit):\n    main(['--help'])\n", []),
    "another function's result": ("run(['fit'])\n", []),
}


@pytest.mark.parametrize("case", SNIPPETS)
def test_the_scan_finds_a_dropped_exit_code_and_nothing_else(case):
    source, lines = SNIPPETS[case]
    assert unchecked_main_calls(source) == lines
