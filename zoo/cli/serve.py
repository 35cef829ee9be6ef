"""``zoo serve PATH``: serve an export folder (or a run directory / checkpoint, exported on the fly) over HTTP
with server-side dynamic batching (in-process, or LitServe's worker processes). See docs/serving.md for the API."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo serve", description=__doc__, allow_abbrev=False)
    parser.add_argument("path", help="export folder (zoo export ... --out DIR), run directory or .ckpt file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=32, help="requests answered in one forward pass")
    parser.add_argument("--batch-timeout", type=float, default=0.01, help="seconds to wait for a batch to fill")
    parser.add_argument("--workers", type=int, default=1, help="model worker processes")
    parser.add_argument("--backend", choices=("torch", "onnx"), default=None,
                        help="default: the export's own format (torch for safetensors / torch_export)")
    parser.add_argument("--calibration", choices=("temperature", "none"), default="temperature",
                        help="apply the fitted temperature to probabilities (none: raw softmax)")
    parser.add_argument("--api-key", default=None, help="require this X-API-Key header (or set ZOO_SERVE_API_KEY)")
    parser.add_argument("--max-body-mb", type=float, default=20.0, help="larger request bodies get 413")
    parser.add_argument("--threads", type=int, default=None, help="torch / onnxruntime threads per worker")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="on SIGTERM / Ctrl-C: seconds to finish the requests already accepted before exiting")
    parser.add_argument("--max-image-pixels", type=int, default=None,
                        help="images with more pixels get 413 (default: PIL's decompression-bomb limit)")
    parser.add_argument("--engine", choices=("auto", "inprocess", "litserve"), default="auto",
                        help="inprocess: the model in the HTTP server's process (one worker); litserve: model worker "
                             "processes; auto: inprocess for --workers 1, else litserve (docs/serving.md)")
    args = parser.parse_args(argv)

    from zoo.serve import serve

    serve(args.path, host=args.host, port=args.port, max_batch_size=args.max_batch_size,
          batch_timeout=args.batch_timeout, workers=args.workers, backend=args.backend, calibration=args.calibration,
          api_key=args.api_key, max_body_mb=args.max_body_mb, threads=args.threads, drain_timeout=args.drain_timeout,
          max_image_pixels=args.max_image_pixels, engine=args.engine)
    return 0
