"""``torch.compile`` as a callback, so an overlay can switch it on for any recipe."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from torch import nn

from zoo.compat import is_compiled
from zoo.registry import CALLBACKS


def compile_targets(module: nn.Module) -> list[nn.Module]:
    """The submodules worth compiling: the direct children that hold parameters, minus metric objects
    (torchmetrics state updates are Python-heavy and gain nothing)."""
    from torchmetrics import Metric, MetricCollection

    targets = []
    for child in module.children():
        if isinstance(child, Metric | MetricCollection):
            continue
        if isinstance(child, nn.ModuleDict) and all(isinstance(c, Metric | MetricCollection) for c in child.values()):
            continue
        if any(True for _ in child.parameters()):
            targets.append(child)
    return targets


@CALLBACKS.register("torch_compile", summary="torch.compile the model's submodules in place (overlay compile.yaml)")
class TorchCompile(pl.Callback):
    """Compiles each parameter-holding child of the task (backbone, head, ...) with ``nn.Module.compile``.

    In-place compilation keeps ``state_dict`` keys unchanged, so checkpoints load with or without compile; the
    task's own ``training_step`` (techniques, loss terms) stays eager Python around the compiled parts. Runs at
    ``on_fit_start`` / ``on_test_start`` / ``on_predict_start``, i.e. after tasks have built their networks
    in ``setup``.

    Args:
        backend: a ``torch.compile`` backend (``inductor``; ``eager`` / ``aot_eager`` to debug tracing).
        mode: ``None``, ``default``, ``reduce-overhead`` or ``max-autotune``.
        dynamic: passed to ``torch.compile`` (``None`` lets it decide).
        fullgraph: fail on graph breaks instead of falling back to Python.
    """

    def __init__(self, backend: str = "inductor", mode: str | None = None, dynamic: bool | None = None,
                 fullgraph: bool = False) -> None:
        if mode not in (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
            raise ValueError(f"TorchCompile: mode must be None, default, reduce-overhead or max-autotune; got {mode!r}")
        self.backend = backend
        self.mode = mode
        self.dynamic = dynamic
        self.fullgraph = fullgraph
        self.compiled: list[str] = []

    def _compile(self, pl_module: pl.LightningModule) -> None:
        targets = compile_targets(pl_module)
        for name, child in pl_module.named_children():
            if child in targets and not is_compiled(child):
                child.compile(backend=self.backend, mode=self.mode, dynamic=self.dynamic, fullgraph=self.fullgraph)
                self.compiled.append(name)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._compile(pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._compile(pl_module)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._compile(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {}


__all__ = ["TorchCompile", "compile_targets"]
