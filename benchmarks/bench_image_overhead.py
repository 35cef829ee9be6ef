"""zoo's training-step overhead against a plain PyTorch loop: same network, same initial weights, same
DataLoader, same optimizer and batch size, timed over the same window of steps, interleaved repeats.

    python -m benchmarks.run image_overhead          # defaults: mnist5k, small_cnn, batch 64
    python -m benchmarks.bench_image_overhead --steps 120 --repeats 5 --backbone resnet18_small
    python -m benchmarks.bench_image_overhead --dataset fashion_mnist --backbone resnet18_small --batch-size 128 \
        --precision bf16-mixed --channels-last    # both sides in bf16 autocast and NHWC layout
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from typing import Any

import torch
import torch.nn.functional as F


class _StepTimer:
    """Times steps [warmup, warmup + steps) of a Lightning fit."""

    def __init__(self, warmup: int, steps: int) -> None:
        import lightning.pytorch as pl

        outer = self

        class Timer(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == warmup:
                    outer.start = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if trainer.global_step == warmup + steps:
                    outer.end = time.perf_counter()

        self.callback = Timer()
        self.start = self.end = 0.0


def _loader(args: argparse.Namespace) -> Any:
    from zoo.data.image import ImageDataModule

    dm = ImageDataModule(dataset=args.dataset, batch_size=args.batch_size, val_fraction=0.0, test_fraction=0.0,
                         seed=0, image_size=args.image_size)
    dm.setup("fit")
    return dm, dm.train_dataloader()


def _model(args: argparse.Namespace, dm: Any):
    from zoo.tasks.image import ImageClassifier

    torch.manual_seed(0)
    model = ImageClassifier(backbone=args.backbone, num_classes=dm.num_classes, class_names=dm.class_names,
                            in_channels=dm.in_channels, lr=1e-3, weight_decay=0.01, scheduler="none",
                            channels_last=args.channels_last)
    return model


def run_plain(template: Any, loader: Any, warmup: int, steps: int, precision: str = "32") -> float:
    """What a user writes by hand: forward, cross-entropy, backward, AdamW step (under bf16 autocast if asked)."""
    model = copy.deepcopy(template)
    net_backbone, head = model.backbone, model.head
    mean, std = model.pixel_mean, model.pixel_std
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    model.train()
    done, start = 0, 0.0
    while True:
        for batch in loader:
            if done == warmup:
                start = time.perf_counter()
            x, y = batch["image"], batch["label"]
            if template.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16-mixed"):
                logits = head(net_backbone((x - mean) / std))
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == warmup + steps:
                return steps / (time.perf_counter() - start)


def run_zoo(template: Any, dm: Any, warmup: int, steps: int, precision: str = "32") -> float:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    model = copy.deepcopy(template)
    timer = _StepTimer(warmup, steps)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(max_steps=warmup + steps, accelerator="cpu", devices=1, logger=CSVLogger(tmp),
                             precision=precision,
                             log_every_n_steps=50, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                             callbacks=[timer.callback])
        trainer.fit(model, train_dataloaders=dm.train_dataloader())
    return steps / (timer.end - timer.start)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed"])
    parser.add_argument("--channels-last", action="store_true", help="image_classifier(channels_last=True)")
    args = parser.parse_args(argv or [])
    dm, loader = _loader(args)
    template = _model(args, dm)
    template.configure_from_data(dm)
    plain, zoo = [], []
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits both alike
        plain.append(run_plain(template, loader, args.warmup, args.steps, args.precision))
        zoo.append(run_zoo(template, dm, args.warmup, args.steps, args.precision))
    p, z = statistics.median(plain), statistics.median(zoo)
    result = {
        "setup": {k: v for k, v in vars(args).items()},
        "plain_steps_per_s": round(p, 3), "zoo_steps_per_s": round(z, 3),
        "plain_runs": [round(v, 3) for v in plain], "zoo_runs": [round(v, 3) for v in zoo],
        "zoo_over_plain_time_ratio": round(p / z, 4), "zoo_overhead_pct": round(100 * (p / z - 1), 2),
    }
    print(f"{'':14}{'steps/s (median)':>18}{'runs':>30}")
    print(f"{'plain PyTorch':14}{p:18.2f}{str(result['plain_runs']):>30}")
    print(f"{'zoo':14}{z:18.2f}{str(result['zoo_runs']):>30}")
    print(f"zoo step time / plain step time = {result['zoo_over_plain_time_ratio']:.3f} "
          f"(overhead {result['zoo_overhead_pct']:+.1f}%)")
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
