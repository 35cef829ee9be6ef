"""One short message for a bad key or value of ``zoo fit|validate|test|predict`` (and of ``zoo tune``'s search
keys): the culprit flag first, then close matches, instead of jsonargparse's page of usage."""

from __future__ import annotations

import difflib
import re
import sys
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser

from zoo.cli.fast_args import close_keys, unknown_key_hint
from zoo.compat import jsonargparse_debug_mode, parser_actions


class ZooArgumentParser(LightningArgumentParser):
    """Reports a bad key or value in one short message, with close matches, instead of a page of usage."""

    def error(self, message: str, ex: Exception | None = None) -> Any:
        if not self.exit_on_error or jsonargparse_debug_mode():
            return super().error(message, ex)
        sub = getattr(ex, "subcommand_parser", None)
        prog = (sub or self).prog.replace(" [options]", "")
        sys.stderr.write(f"{prog}: error: {_explain(message, self)}\n")
        sys.stderr.write(f"Run `{prog} --help` for the accepted keys (`--model.help CLASS` for a model's).\n")
        self.exit(2)


def _known_keys(parser: Any, seen: set[int] | None = None) -> list[str]:
    seen = seen if seen is not None else set()
    if id(parser) in seen:
        return []
    seen.add(id(parser))
    keys = []
    for action in parser_actions(parser):
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for sub in choices.values():
                keys += _known_keys(sub, seen)
        dest = getattr(action, "dest", "")
        if dest and dest not in ("help", "config", "print_config", "==SUPPRESS=="):
            keys.append(dest)
    return keys


def _init_params(class_path: str) -> list[str]:
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    except (ImportError, AttributeError, ValueError, TypeError):
        return []


_UNKNOWN_KEY_PATTERNS = (
    r"""[Oo]ption ["']([\w.\-]+)["'] is not accepted""",
    r"""does not accept option ["']([\w.\-]+)["']""",
    r"""[Kk]ey ["']([\w.\-]+)["'] is not expected""",
    r"""No action for key ["']([\w.\-]+)["']""",
    r"""unrecognized arguments: --([\w.\-]+)""",
)


def _unknown_keys(message: str) -> list[str]:
    return [m for pattern in _UNKNOWN_KEY_PATTERNS for m in re.findall(pattern, message)]


def _summary(message: str) -> str | None:
    """jsonargparse's error for a nested value starts with ``Parser key "model":`` and names the culprit lines
    below; the first line should name it: ``--model.init_args.lr: Expected a <class 'float'>. Got value: abc``."""
    keys = re.findall(r'Parser key "([\w.]+)"', message)
    if not keys:
        return None
    flag = keys[0] if len(keys) == 1 else f"{keys[0]}.init_args.{keys[-1]}"
    bad_path = re.search(r"Expected a dot import path string: (\S+)", message)
    if bad_path:
        return (f"--{keys[0]}.class_path {bad_path.group(1)}: not a registered name or an importable class "
                f"(`zoo list models`, `zoo list datamodules`, `zoo list callbacks` show the names)")
    problem = re.search(r"Problem with given class_path '([\w.]+)':\s*\n\s*(.+)", message)
    if problem:  # the cause (a typo in the class name, a module that does not import) first, not "bad value"
        path, cause = problem.group(1), problem.group(2).strip()
        return f"--{keys[0]}.class_path {path}: {cause}{_close_class_names(path)}"
    lines = message.splitlines()
    last = max(i for i, line in enumerate(lines) if f'Parser key "{keys[-1]}"' in line)
    detail = next((line.strip() for line in lines[last + 1:] if line.strip() and not line.strip().startswith("- ")), "")
    if not detail or detail.startswith("Does not validate"):
        given = re.search(r"Given value: NestedArg\(key='([\w.]+)', val='([^']*)'\)", message)
        if given:
            flag = flag if given.group(1) == keys[-1] else keys[0] + ".init_args." + given.group(1)
            return f"--{flag}: bad value {given.group(2)!r}"
        return None
    return f"--{flag}: {detail}"


def _close_class_names(path: str) -> str:
    """``; did you mean: BPR?`` for a class name close to one of its (already imported) module's classes."""
    import sys

    module, _, name = path.rpartition(".")
    found = sys.modules.get(module)
    if found is None:
        return ""
    classes = [n for n, v in vars(found).items() if isinstance(v, type) and not n.startswith("_")]
    close = difflib.get_close_matches(name, classes, n=3, cutoff=0.5)
    return f"; did you mean: {', '.join(f'{module}.{c}' for c in close)}?" if close else ""


def _explain(message: str, parser: Any) -> str:
    hints = []
    candidates = sorted(set(_known_keys(parser)))
    class_match = re.search(r"class_path '([\w.]+)'", message)
    for bad in dict.fromkeys(_unknown_keys(message)):
        if bad in candidates:
            continue
        if class_match and "." not in bad:
            params = _init_params(class_match.group(1))
            close = difflib.get_close_matches(bad, params, n=3, cutoff=0.6)
            accepted = ", ".join(params)
            hints.append(f"'{bad}' is not an argument of {class_match.group(1).rsplit('.', 1)[-1]}"
                         + (f"; did you mean: {', '.join(close)}?" if close else "") + f" Accepted: {accepted}")
            continue
        close = close_keys(bad, candidates)  # shared with the pre-check, so both say the same
        if close:
            hints.append(unknown_key_hint(bad, close))
    # the first line names the culprit; jsonargparse's nested report follows for the details
    first = hints[0] if hints else _summary(message)
    if first is None:
        return "\n".join([message.strip(), *hints])
    return "\n".join([first, message.strip(), *hints[1:]])


__all__ = ["ZooArgumentParser", "_explain"]
