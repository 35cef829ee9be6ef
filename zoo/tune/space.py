"""Search spaces: a YAML mapping from any recipe key to a distribution, and recipes with a trial's values set.

    model.init_args.lr: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
    data.init_args.max_length: {type: int, low: 64, high: 256, step: 64}
    trainer.callbacks[fgm].init_args.epsilon: {type: float, low: 0.1, high: 2.0}
    model.init_args.peft:                       # a whole sub-config: labels -> values
      type: categorical
      choices: {lora: {method: lora, r: 8, lora_alpha: 16, target_modules: [query, value]}, none: null}
    model.init_args.peft.r: {type: int, low: 4, high: 32, step: 4, when: {model.init_args.peft: lora}}

A key is a dotted path into the recipe; ``name[x]`` picks the list item whose ``class_path`` is ``x`` (registry
name, class name or dotted path) or, for a number, the item at that index. Keys are sampled and applied in file
order, so a conditional key (``when``) comes after the key it depends on and may set a value inside it.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError

TYPES = ("float", "int", "categorical")
_FIELDS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
           "categorical": {"choices"}}
_PART = re.compile(r"^([A-Za-z_][\w\-@]*)(?:\[([^\]]+)\])?$")


@dataclass
class Param:
    """One searched key: its distribution and the condition under which it is sampled."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: dict[str, Any] = field(default_factory=dict)  # label -> value (labels are what Optuna stores)
    when: dict[str, Any] = field(default_factory=dict)  # key -> label or value of an earlier categorical key

    def distribution(self) -> Any:
        import optuna.distributions as d

        if self.type == "float":
            return d.FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return d.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return d.CategoricalDistribution(list(self.choices))

    def value(self, sampled: Any) -> Any:
        """The recipe value for what Optuna stored (a categorical label -> its value)."""
        return copy.deepcopy(self.choices[sampled]) if self.type == "categorical" else sampled

    def samples(self) -> list[Any]:
        """Values a check parses the recipe with: both ends of a range, every choice."""
        if self.type == "categorical":
            return list(self.choices)
        low, high = (int(self.low), int(self.high)) if self.type == "int" else (self.low, self.high)
        return [low, high]


@dataclass
class SearchSpace:
    params: list[Param]
    source: str = "<search>"

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def active(self, param: Param, chosen: dict[str, Any]) -> bool:
        return all(k in chosen and _matches(self._param(k), chosen[k], want) for k, want in param.when.items())

    def _param(self, key: str) -> Param:
        return next(p for p in self.params if p.key == key)

    def sample(self, trial: Any) -> dict[str, Any]:
        """Key -> stored value (labels for categoricals) for one Optuna trial, conditionals included when active."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if not self.active(p, chosen):
                continue
            if p.type == "float":
                chosen[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log, step=p.step)
            elif p.type == "int":
                chosen[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
            else:
                chosen[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        return chosen

    def overrides(self, chosen: dict[str, Any]) -> dict[str, Any]:
        """Key -> recipe value, in file order."""
        return {p.key: p.value(chosen[p.key]) for p in self.params if p.key in chosen}

    def check_samples(self) -> list[dict[str, Any]]:
        """A few stored-value assignments that together use every choice and both ends of every range, each
        respecting the conditions: what the recipe is parsed with before any trial runs."""
        width = max(len(p.samples()) for p in self.params)
        out = []
        for i in range(width):
            chosen: dict[str, Any] = {}
            for p in self.params:
                if self.active(p, chosen):
                    values = p.samples()
                    chosen[p.key] = values[i % len(values)]
            out.append(chosen)
        return out


def _matches(param: Param, stored: Any, want: Any) -> bool:
    wanted = want if isinstance(want, list) else [want]
    return any(stored == w or (param.type == "categorical" and param.choices.get(stored) == w) for w in wanted)


def load_space(path: str | Path) -> SearchSpace:
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--search {path}: no such file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"--search {path}: not valid YAML ({err})") from None
    return parse_space(raw, source=str(path))


def parse_space(raw: Any, source: str = "<search>") -> SearchSpace:
    """Checks every distribution; the message names the file, the key and what is accepted."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: expected a mapping of recipe keys to distributions, got {type(raw).__name__}")
    params: list[Param] = []
    for key, spec in raw.items():
        where = f"{source}: {key}"
        split_key(str(key), where)
        params.append(_param(str(key), spec, where, params))
    return SearchSpace(params, source)


def _param(key: str, spec: Any, where: str, earlier: list[Param]) -> Param:
    if isinstance(spec, list):  # shorthand: a list is a categorical
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a distribution such as {{type: float, low: 0.0001, high: 0.1, log: true}}"
                          f" or a list of choices, got {spec!r}")
    spec = dict(spec)
    kind = spec.pop("type", None)
    when = spec.pop("when", None) or {}
    if kind not in TYPES:
        raise ConfigError(f"{where}: type must be one of {', '.join(TYPES)}, got {kind!r}")
    unknown = sorted(set(spec) - _FIELDS[kind])
    if unknown:
        raise ConfigError(f"{where}: {kind} distribution does not take {', '.join(unknown)}; "
                          f"accepted: type, when, {', '.join(sorted(_FIELDS[kind]))}")
    if not isinstance(when, dict):
        raise ConfigError(f"{where}: when must map an earlier categorical key to a choice, got {when!r}")
    for dep in when:
        if not any(p.key == dep and p.type == "categorical" for p in earlier):
            raise ConfigError(f"{where}: when names {dep!r}, which must be a categorical key listed before this one")
    if kind == "categorical":
        return Param(key, kind, choices=_choices(spec.get("choices"), where), when=dict(when))
    return _numeric(key, kind, spec, where, dict(when))


def _choices(choices: Any, where: str) -> dict[str, Any]:
    if isinstance(choices, dict) and choices:
        return {str(k): v for k, v in choices.items()}
    if isinstance(choices, list) and choices:
        out: dict[str, Any] = {}
        for c in choices:
            if c is not None and not isinstance(c, str | int | float | bool):
                raise ConfigError(f"{where}: choice {c!r} is not a plain value; give choices as a mapping "
                                  "label -> value to choose between sub-configs")
            out.setdefault(c, c)
        return out
    raise ConfigError(f"{where}: categorical needs a non-empty list (or label -> value mapping) of choices")


def _numeric(key: str, kind: str, spec: dict[str, Any], where: str, when: dict[str, Any]) -> Param:
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except KeyError as err:
        raise ConfigError(f"{where}: {kind} distribution needs low and high (missing {err.args[0]})") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: low and high must be numbers, got {spec.get('low')!r} and {spec.get('high')!r}")\
            from None
    log, step = bool(spec.get("log", False)), spec.get("step")
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"{where}: need finite low <= high, got low={low:g} high={high:g}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log distribution needs low > 0, got {low:g}")
    if step is not None:
        if not isinstance(step, int | float) or step <= 0:
            raise ConfigError(f"{where}: step must be a positive number, got {step!r}")
        if log:
            raise ConfigError(f"{where}: step and log cannot be combined (Optuna samples one or the other)")
    if kind == "int":
        if low != int(low) or high != int(high) or (step is not None and step != int(step)):
            raise ConfigError(f"{where}: an int distribution needs whole low, high and step")
        return Param(key, kind, low=int(low), high=int(high), log=log, step=int(step) if step else None, when=when)
    return Param(key, kind, low=low, high=high, log=log, step=float(step) if step else None, when=when)


# -- keys into a recipe ---------------------------------------------------------------------------------------

def split_key(key: str, where: str = "") -> list[tuple[str, str | None]]:
    parts = []
    for part in key.split("."):
        m = _PART.match(part)
        if not m:
            raise ConfigError(f"{where or key}: {part!r} is not a key part (name or name[selector])")
        parts.append((m.group(1), m.group(2)))
    return parts


def _select(items: list[Any], selector: str, where: str) -> Any:
    if selector.lstrip("-").isdigit():
        try:
            return items[int(selector)]
        except IndexError:
            raise ConfigError(f"{where}: index {selector} is out of range ({len(items)} items)") from None
    want = _norm(selector)
    names = []
    for item in items:
        path = str(item.get("class_path", "")) if isinstance(item, dict) else str(item)
        names.append(path)
        if _norm(path) == want or _norm(path.rsplit(".", 1)[-1]) == want:
            return item
    listed = ", ".join(names) or "nothing"
    raise ConfigError(f"{where}: no item with class_path {selector!r} in this list (it has: {listed})")


def _norm(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def set_key(recipe: dict[str, Any], key: str, value: Any) -> None:
    """Sets ``key`` in the recipe, creating mappings on the way; a selector must find an existing list item."""
    parts = split_key(key)
    node: Any = recipe
    for i, (name, selector) in enumerate(parts):
        last = i == len(parts) - 1
        where = f"key {key}"
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: {'.'.join(n for n, _ in parts[:i])} is {node!r} in the recipe, not a mapping")
        if selector is None:
            if last:
                node[name] = copy.deepcopy(value)
                return
            if not isinstance(node.get(name), dict):
                node[name] = {}
            node = node[name]
            continue
        items = node.get(name)
        if not isinstance(items, list):
            raise ConfigError(f"{where}: the recipe has no list at {'.'.join(n for n, _ in parts[:i + 1])} "
                              f"to pick [{selector}] from")
        item = _select(items, selector, where)
        index = next(j for j, x in enumerate(items) if x is item)
        if last:
            items[index] = copy.deepcopy(value)
            return
        if not isinstance(item, dict):  # a bare class_path string: give it room for init_args
            item = items[index] = {"class_path": item}
        node = item


def get_key(recipe: dict[str, Any], key: str) -> Any:
    """The recipe's value at ``key``; KeyError when it is not set."""
    node: Any = recipe
    for name, selector in split_key(key):
        if not isinstance(node, dict) or name not in node:
            raise KeyError(key)
        node = node[name]
        if selector is not None:
            try:
                node = _select(node, selector, key) if isinstance(node, list) else None
            except ConfigError:
                raise KeyError(key) from None
            if node is None:
                raise KeyError(key)
    return node


def apply(recipe: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(recipe)
    for key, value in overrides.items():
        set_key(out, key, value)
    return out


def _plain(value: Any) -> Any:
    """Sequences compared as lists: a parsed recipe holds ``(1, 2)`` where the search file says ``[1, 2]``."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _recipe_choice(space: SearchSpace, recipe: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, Any] | None]:
    """The recipe's values as stored values of the space, and the first searched key whose value the space cannot
    hold (None when all fit). Keys the recipe leaves unset (the model's default) are left out."""
    chosen: dict[str, Any] = {}
    for p in space.params:
        if not space.active(p, chosen):
            continue
        try:
            value = _plain(get_key(recipe, p.key))
        except KeyError:
            continue
        if p.type == "categorical":
            label = next((k for k, v in p.choices.items() if _plain(v) == value), None)
            if label is None:
                return chosen, (p.key, value)
            chosen[p.key] = label
        elif isinstance(value, int | float) and not isinstance(value, bool) and p.low <= value <= p.high:
            chosen[p.key] = int(value) if p.type == "int" else float(value)
        else:
            return chosen, (p.key, value)
    return chosen, None


def outside_space(space: SearchSpace, recipe: dict[str, Any]) -> tuple[str, Any] | None:
    """The first searched key whose recipe value the space cannot hold (so ``--baseline`` cannot run it), or None."""
    return _recipe_choice(space, recipe)[1]


def recipe_values(space: SearchSpace, recipe: dict[str, Any]) -> dict[str, Any] | None:
    """The recipe's own values as stored values of the space (its defaults as a trial), or None when a searched
    value is outside its distribution (``outside_space`` names it); the sampler picks the keys the recipe leaves
    unset."""
    chosen, outside = _recipe_choice(space, recipe)
    return None if outside is not None else chosen
