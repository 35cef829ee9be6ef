"""One rank of a 2-process CPU DDP run of a registered model's tiny case (launched by torchrun from
tests/scale/test_distributed.py): fit, test, predict; writes what the test compares with a single-process run."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import lightning.pytorch as pl

    from zoo.callbacks.prediction_writer import PredictionWriter
    from zoo.registry import MODELS

    out = Path(args.out)
    model, data = MODELS.entry(args.case).meta["tiny_case"](out / "case")
    common = dict(accelerator="cpu", devices=int(os.environ["LOCAL_WORLD_SIZE"]), strategy="ddp", logger=False,
                  enable_progress_bar=False, enable_model_summary=False)
    trainer = pl.Trainer(max_steps=3, limit_val_batches=2, num_sanity_val_steps=0, enable_checkpointing=False,
                         **common)
    trainer.fit(model, data)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    trainer.save_checkpoint(out / "model.ckpt")  # rank 0 writes
    test_metrics = trainer.test(model, data, verbose=False)[0]
    predictor = pl.Trainer(callbacks=[PredictionWriter(str(out / "predictions.csv"))], **common)
    predictor.predict(model, data, return_predictions=False)
    rank = trainer.global_rank
    (out / f"rank{rank}.json").write_text(json.dumps({
        "world_size": trainer.world_size, "fit": fit_metrics, "test": {k: float(v) for k, v in test_metrics.items()},
    }))


if __name__ == "__main__":
    raise SystemExit(main())
