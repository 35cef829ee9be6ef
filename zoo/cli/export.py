"""``zoo export SOURCE --format {safetensors,onnx,torch_export} --out DIR``: a verified, self-contained export of
a run directory (``runs/<recipe>/version_N``), a checkpoint inside one, or a ``zoo ensemble`` directory (its
``ensemble.json``). See docs/serving.md."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo export", description=__doc__, allow_abbrev=False)
    parser.add_argument("source", help="run directory (runs/<recipe>/version_N), a .ckpt file inside one, or a "
                        "zoo ensemble directory (ensemble.json)")
    parser.add_argument("--format", required=True, choices=("safetensors", "onnx", "torch_export"))
    parser.add_argument("--out", required=True, help="folder to write (must not exist or be empty)")
    parser.add_argument("--samples", type=int, default=64, help="inputs from the run's data to verify on")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="allowed max abs difference of logits / scores (times their magnitude above 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    args = parser.parse_args(argv)

    from zoo.export import check_out, export_source

    check_out(args.format, args.out, args.overwrite)  # before the run is loaded: a wrong --out costs nothing

    meta = export_source(args.source, args.format, args.out, samples=args.samples, tolerance=args.tolerance,
                         overwrite=args.overwrite)
    v = meta["verification"]
    topk = next((f"{k} {v[k]:.4f}, " for k in v if k.startswith("top") and k != "top1_agreement"), "")
    what = f"ensemble of {len(meta['members'])} {meta['task']} members" if "members" in meta else meta["task"]
    print(f"zoo export: {what} -> {args.out} ({args.format}); verified on {v['samples']} inputs: max abs "
          f"difference {v['max_abs_diff']:.3g} (allowed {v['allowed_abs_diff']:.3g}), top-1 agreement "
          f"{v['top1_agreement']:.4f}, {topk}against the {v['against']}")
    return 0
