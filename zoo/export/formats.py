"""Writing the three formats, rebuilding a ``safetensors`` export with zoo's task classes, and comparing an
exported artefact with the eager model.

* ``onnx``: the TorchScript-based exporter (``dynamo=False``): seconds for a BERT encoder where the dynamo
  exporter takes ~6x longer, and it keeps the batch and sequence axes dynamic (checked by verification, which runs
  batches of other shapes than the traced one).
* ``torch_export``: ``torch.export.export`` with ``Dim`` batch / sequence axes, saved by ``torch.export.save``.
* ``safetensors``: the state dict (adapters merged); a text model's encoder as a plain Hugging Face directory.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.checkpoints import resolve_task_class
from zoo.export.spec import ExportError
from zoo.inference.family import ExportSpec
from zoo.tasks.text.encoder import EncoderMixin

FORMATS = ("safetensors", "onnx", "torch_export")
FILES = {"onnx": "model.onnx", "torch_export": "model.pt2", "safetensors": "model.safetensors"}


def write_onnx(graph: nn.Module, spec: ExportSpec, path: Path) -> None:
    args = tuple(spec.samples[0][n] for n in spec.inputs)
    axes = {n: {a: name for a, name in spec.dynamic[n].items()} for n in [*spec.inputs, "output"]}
    # nn.TransformerEncoder's fused inference kernel (SASRec) has no ONNX form: trace the plain layers
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches: verified below
            torch.onnx.export(graph, args, str(path), input_names=spec.inputs, output_names=["output"],
                              dynamic_axes=axes, opset_version=18, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def write_torch_export(graph: nn.Module, spec: ExportSpec, path: Path) -> None:
    args = tuple(spec.samples[0][n] for n in spec.inputs)
    dims: dict[str, Any] = {"batch": torch.export.Dim("batch", min=1, max=1 << 16)}
    if spec.max_sequence:
        dims["sequence"] = torch.export.Dim("sequence", min=2, max=spec.max_sequence)
    for axes in spec.dynamic.values():  # a family's own axes (a word's characters or pieces): any size
        for name in axes.values():
            dims.setdefault(name, torch.export.Dim(name, min=1, max=1 << 12))
    shapes = {n: {a: dims[name] for a, name in spec.dynamic[n].items()} for n in spec.inputs}
    if len(args[0]) < 2:
        raise ExportError("torch.export needs a sample batch of at least 2 examples for a dynamic batch axis; "
                          "the run's test split is smaller")
    try:
        with torch.no_grad():
            per_input = [shapes[n] for n in spec.inputs]
            # Graph takes its inputs as *tensors, which torch.export sees as one tuple argument
            varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL
                          for p in inspect.signature(graph.forward).parameters.values())
            program = torch.export.export(graph, args, dynamic_shapes=[tuple(per_input)] if varargs else per_input)
    except Exception as err:
        raise ExportError(f"torch.export could not capture {type(getattr(graph, 'model', graph)).__name__}: "
                          f"{str(err).splitlines()[0][:300]}; try --format onnx") from None
    torch.export.save(program, str(path))


def write_safetensors(model: Any, out: Path, meta: dict[str, Any], tokenizer: Any = None) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    hparams = dict(model.hparams)
    if isinstance(model, EncoderMixin):
        # the encoder as a plain HF directory (usable without zoo); the rest of the weights beside it
        model.encoder.save_pretrained(str(out / "encoder"), safe_serialization=True)
        tokenizer.save_pretrained(str(out / "encoder"))
        state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        hparams.update(encoder="encoder", peft=None)
        meta["files"]["encoder"] = "encoder"
    if "pretrained" in hparams:
        hparams["pretrained"] = False  # the weights come from the export, not from the packaged ones
    save_file(state, str(out / FILES["safetensors"]))
    meta["hparams"] = _plain(hparams)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def rebuild(folder: Path, meta: Any) -> Any:
    """The eager model of a ``safetensors`` export (``meta``: its manifest), rebuilt with the task class it names;
    what :func:`zoo.inference.load` calls as ``rebuild``."""
    from safetensors.torch import load_file

    cls = resolve_task_class(meta["model_class"])
    if cls is None:
        raise ExportError(f"{folder}: task class {meta['model_class']} cannot be imported with this zoo")
    hparams = dict(meta["hparams"])
    if "encoder" in meta.get("files", {}):
        hparams["encoder"] = str(folder / meta["files"]["encoder"])
    if "ks" in hparams:
        hparams["ks"] = tuple(hparams["ks"])
    model = cls(**hparams)
    model.build()
    state = load_file(str(folder / meta["files"]["safetensors"]))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("encoder.")]
    if missing or result.unexpected_keys:
        raise ExportError(f"{folder}: the weights do not fit {cls.__name__} built from the recorded settings "
                          f"(missing {missing[:5]}, unexpected {result.unexpected_keys[:5]})")
    return model.eval()


def compare(eager: Tensor, exported: Tensor, mask: Tensor | None, k: int) -> dict[str, float]:
    """Max abs difference and top-1 / top-K agreement of two ``[..., classes]`` outputs (rows where ``mask``)."""
    a, b = eager.float().reshape(-1, eager.shape[-1]), exported.float().reshape(-1, exported.shape[-1])
    if mask is not None:
        keep = mask.reshape(-1).bool()
        a, b = a[keep], b[keep]
    finite = torch.isfinite(a) & torch.isfinite(b)
    diff = (a - b).abs()[finite]
    k = min(k, a.shape[-1])
    ta, tb = a.topk(k).indices, b.topk(k).indices
    top2 = a.topk(min(2, a.shape[-1])).values
    margin = (top2[:, 0] - top2[:, -1]) if a.shape[-1] > 1 else torch.full((len(a),), float("inf"))
    same_topk = torch.tensor([set(x.tolist()) == set(y.tolist()) for x, y in zip(ta, tb)], dtype=torch.float32)
    return {"rows": int(len(a)), "max_abs_diff": float(diff.max()) if diff.numel() else 0.0,
            "max_abs_eager": float(a[finite].abs().max()) if finite.any() else 0.0,
            "top1_agree": float((ta[:, 0] == tb[:, 0]).float().mean()), f"top{k}_agree": float(same_topk.mean()),
            "top1_disagree_beyond_ties": int(((ta[:, 0] != tb[:, 0]) & (margin > 1e-4)).sum())}


def verify(eager_fn: Any, exported_fn: Any, spec: ExportSpec, tolerance: float, k: int = 5,
           exported_feeds: list[dict[str, Tensor]] | None = None, what: str = "") -> dict[str, Any]:
    """Run both on the spec's sample batches (the exported side on ``exported_feeds`` instead, when given: the
    same inputs as the predictor prepares them); raise :class:`ExportError` beyond ``tolerance`` (absolute,
    scaled by the eager outputs' magnitude when above 1) or when a top-1 answer differs where the eager top two
    are more than 1e-4 apart."""
    parts = []
    for i, feeds in enumerate(spec.samples):
        with torch.no_grad():
            a = eager_fn(*[feeds[n] for n in spec.inputs])
        b = exported_fn(exported_feeds[i] if exported_feeds is not None else feeds)
        mask = feeds.get(spec.mask_input) if spec.mask_input else None
        parts.append(compare(a, b, mask, k))
    kname = next(key for key in parts[0] if key.startswith("top") and key != "top1_agree" and "disagree" not in key)
    rows = sum(p["rows"] for p in parts)
    result = {"samples": rows, "batches": len(parts), "max_abs_diff": max(p["max_abs_diff"] for p in parts),
              "top1_agreement": sum(p["top1_agree"] * p["rows"] for p in parts) / rows,
              kname.replace("_agree", "_agreement"): sum(p[kname] * p["rows"] for p in parts) / rows,
              "tolerance": tolerance}
    scale = max(1.0, max(p["max_abs_eager"] for p in parts))
    result["allowed_abs_diff"] = tolerance * scale
    bad_top1 = sum(p["top1_disagree_beyond_ties"] for p in parts)
    if result["max_abs_diff"] > result["allowed_abs_diff"] or bad_top1:
        raise ExportError(f"the exported model{what} disagrees with the eager one: max abs difference "
                          f"{result['max_abs_diff']:.3g} (allowed {result['allowed_abs_diff']:.3g}), top-1 agreement "
                          f"{result['top1_agreement']:.4f} ({bad_top1} outside ties); nothing was written. Raise "
                          "--tolerance only if this difference is acceptable")
    result["passed"] = True
    return result


__all__ = ["FILES", "FORMATS", "compare", "rebuild", "verify", "write_onnx", "write_safetensors", "write_torch_export"]
