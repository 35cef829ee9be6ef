"""fp32 against bf16 autocast for MiniLM training steps on this CPU: what ``precision: auto`` decides from.

    python -m benchmarks.bench_precision --steps 4 --repeats 2 --batch-size 16 --max-length 128

Full fine-tuning and LoRA (r 8, query/value), the same random token batch for both precisions, interleaved
repeats (fp32, bf16, fp32, bf16, ...) so that a change in the machine's load hits both sides; the first step of
each repeat is a warm-up. Prints samples/s per precision and the bf16 / fp32 ratio, with the CPU's bf16 flags and
the load average, and writes them to ``benchmarks/results/precision_minilm_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch


def _step_rates(model, ids: torch.Tensor, precision: str, steps: int) -> float:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids=ids).last_hidden_state.float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return len(ids) / statistics.mean(times[1:])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "precision_minilm_cpu.json"))
    args = parser.parse_args(argv)

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    from zoo.backbones.text import minilm
    from zoo.scale import cpu_bf16_kind, cpu_flags

    torch.manual_seed(0)
    ids = torch.randint(1000, 20000, (args.batch_size, args.max_length))
    result: dict = {"benchmark": "bench_precision", "date": time.strftime("%Y-%m-%d"),
                    "machine": {"cpu_bf16": cpu_bf16_kind(cpu_flags()), "threads": torch.get_num_threads(),
                                "flags": sorted(f for f in cpu_flags() if "bf16" in f or f in ("avx2", "avx512f"))},
                    "load_before": os.getloadavg(), "samples_per_s": {}}
    for mode in ("full", "lora"):
        model = AutoModel.from_pretrained(str(minilm()))
        if mode == "lora":
            model = get_peft_model(model, LoraConfig(r=8, target_modules=["query", "value"]))
        for _ in range(args.repeats):
            for precision in ("fp32", "bf16"):
                rate = _step_rates(model, ids, precision, args.steps)
                result["samples_per_s"].setdefault(f"{mode}/{precision}", []).append(round(rate, 3))
        rates = result["samples_per_s"]
        ratio = statistics.mean(rates[f"{mode}/bf16"]) / statistics.mean(rates[f"{mode}/fp32"])
        result[f"{mode}/bf16_over_fp32"] = round(ratio, 3)
        print(f"{mode}: fp32 {rates[f'{mode}/fp32']} bf16 {rates[f'{mode}/bf16']} samples/s, bf16/fp32 {ratio:.2f}")
    result["load_after"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
