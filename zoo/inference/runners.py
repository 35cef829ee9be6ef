"""The exported graph behind a predictor: named input tensors in, one output tensor (logits or scores) out.

``onnx`` runs ``model.onnx`` with onnxruntime; ``torch_export`` runs the program saved by ``torch.export.save``.
Neither needs zoo's task classes or Lightning (a ``safetensors`` export is rebuilt by :mod:`zoo.export`, which
hands the rebuilt module to :class:`ModuleRunner`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ZooError


class ExportFormatError(ZooError, ValueError):
    """An export folder that cannot be run with the asked backend."""


class Runner:
    """``runner(feeds) -> Tensor``: ``feeds`` maps each name of :attr:`input_names` to a tensor."""

    backend = "?"

    def __init__(self, input_names: list[str]) -> None:
        self.input_names = list(input_names)

    def __call__(self, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class OnnxRunner(Runner):
    backend = "onnx"
    #: whether ONNX Runtime's idle threads spin after a run (its default); ``zoo serve`` turns it off: on a few
    #: cores the spinning threads burnt about 100 µs of CPU per request that the HTTP server needed
    allow_spinning = True

    def __init__(self, path: Path, input_names: list[str], threads: int | None = None) -> None:
        super().__init__(input_names)
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        if not self.allow_spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph_inputs = [i.name for i in self.session.get_inputs()]
        # an input the graph does not read is dropped by the exporter: feed only what the graph declares
        self.graph_inputs = [n for n in self.input_names if n in graph_inputs]

    def __call__(self, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.session.run(None, {n: feeds[n].cpu().numpy() for n in self.graph_inputs})[0]
        return torch.from_numpy(out)


class ModuleRunner(Runner):
    """Any callable taking the inputs positionally (a ``torch.export`` program's module, a rebuilt model)."""

    backend = "torch"

    def __init__(self, module: Callable[..., torch.Tensor], input_names: list[str]) -> None:
        super().__init__(input_names)
        self.module = module

    def __call__(self, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(*[feeds[n] for n in self.input_names]).float()


def exported_program_runner(path: Path, input_names: list[str]) -> ModuleRunner:
    program = torch.export.load(str(path))
    return ModuleRunner(program.module(), input_names)


def table_runner(path: Path, input_names: list[str]) -> ModuleRunner:
    """A recommender exported as tables: ``scores = user_vectors[user] @ item_vectors.T``."""
    from safetensors.torch import load_file

    tables = load_file(str(path))
    users, items = tables["user_vectors"], tables["item_vectors"]
    return ModuleRunner(lambda user: users[user] @ items.T, input_names)


def runner_for(folder: Path, manifest: Any, backend: str | None = None, threads: int | None = None,
               rebuilt: Callable[[], torch.nn.Module] | None = None) -> Runner:
    """The runner of an export folder (``manifest``: its :class:`~zoo.inference.manifest.Manifest`): ``onnx``,
    or ``torch`` (the ``torch.export`` program, a recommender's tables, or the module ``rebuilt()`` returns for a
    ``safetensors`` model, which needs zoo's task classes)."""
    files, names, fmt = manifest.files, list(manifest.inputs), manifest.format
    backend = backend or ("onnx" if fmt == "onnx" else "torch")
    if backend not in ("onnx", "torch"):
        raise ExportFormatError(f"backend must be onnx or torch, got {backend!r}")
    if backend == "onnx":
        if "onnx" not in files:
            raise ExportFormatError(f"{folder} is a {fmt} export, which has no ONNX graph for --backend onnx; "
                                    f"export it with --format onnx")
        return OnnxRunner(folder / files["onnx"], names, threads)
    if threads:
        torch.set_num_threads(threads)
    if "torch_export" in files:
        return exported_program_runner(folder / files["torch_export"], names)
    if fmt == "safetensors" and manifest.tables_only:
        return table_runner(folder / files["safetensors"], names)
    if fmt == "safetensors" and rebuilt is not None:
        return ModuleRunner(rebuilt(), names)
    if fmt == "safetensors":
        raise ExportFormatError(f"{folder} is a safetensors export: its network is rebuilt from zoo's task classes, "
                                "so load it with zoo.export.load_predictor (or `zoo serve`); for a loader without "
                                "zoo's training stack export --format onnx or torch_export")
    raise ExportFormatError(f"{folder} is a {fmt} export, which has no torch.export program for --backend torch; "
                            "use --backend onnx")


__all__ = ["ExportFormatError", "ModuleRunner", "OnnxRunner", "Runner", "exported_program_runner", "runner_for",
           "table_runner"]
