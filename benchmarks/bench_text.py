"""BBC News with MiniLM: transformers' ``Trainer`` vs zoo, same model, data, batch size, epochs and precision.

Both sides get the same tokenized split (zoo's ``TextDataModule``), the same encoder with the same mean-pooling
head and the same PEFT config, AdamW with linear warm-up/decay, and train for the same number of epochs. The
Trainer side uses ``DataCollatorWithPadding`` (dynamic padding, random batches, its default); zoo uses dynamic
padding with length-grouped batches. Reported: training samples/s, test accuracy and macro-F1, and the ratio.

    python -m benchmarks.bench_text                       # short default: 320 documents, 1 epoch
    python -m benchmarks.bench_text --max-samples 0 --epochs 3   # the full BBC job
    python -m benchmarks.bench_text --dataset tweets_sentiment --max-length 64   # short, varied texts
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_text", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="bbc_news")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--max-samples", type=int, default=320, help="documents drawn from the corpus (0 = all)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--peft", choices=["lora", "none"], default="lora")
    p.add_argument("--lr", type=float, default=None, help="default 1e-3 with LoRA, 5e-5 without")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--seed", type=int, default=42)
    return p


def _peft(args: Any) -> dict[str, Any] | None:
    return {"method": "lora", "r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"]} \
        if args.peft == "lora" else None


def _scores(pred: list[int], gold: list[int], n: int) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, f1_score

    f1 = f1_score(gold, pred, average="macro", labels=list(range(n)), zero_division=0)
    return float(accuracy_score(gold, pred)), float(f1)


def run_hf_trainer(args: Any, data: Any, lr: float) -> dict[str, Any]:
    import torch
    from torch import nn
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from zoo.backbones.text import apply_peft, load_encoder, pool

    set_seed(args.seed)

    class MeanPoolClassifier(nn.Module):
        """The same network as zoo's TextClassifier: encoder, mean pooling, dropout, linear head."""

        def __init__(self) -> None:
            super().__init__()
            enc = load_encoder(args.encoder)
            self.encoder = apply_peft(enc, _peft(args))
            self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(enc.config.hidden_size, data.num_classes))

        def forward(self, input_ids: Any, attention_mask: Any, labels: Any = None) -> dict[str, Any]:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            logits = self.head(pool(hidden, attention_mask, "mean"))
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = nn.functional.cross_entropy(logits.float(), labels)
            return out

    def rows(split: str) -> list[dict[str, Any]]:
        return [{"input_ids": r["input_ids"], "labels": r["label"]} for r in data.splits[split].rows]

    train, test = rows("train"), rows("test")
    # warmup_steps below 1 is a ratio of the total steps (transformers 5 dropped warmup_ratio)
    targs = TrainingArguments(
        output_dir=os.path.join(os.environ.get("TMPDIR", "/tmp"), "zoo_bench_text_hf"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, num_train_epochs=args.epochs, learning_rate=lr, weight_decay=0.01,
        lr_scheduler_type="linear", warmup_steps=0.06, bf16=args.precision == "bf16",
        use_cpu=not torch.cuda.is_available(),
        report_to=[], save_strategy="no", eval_strategy="no", logging_strategy="no", seed=args.seed,
        dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
    )
    model = MeanPoolClassifier()
    trainer = Trainer(model=model, args=targs, train_dataset=train,
                      data_collator=DataCollatorWithPadding(data.tokenizer))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    pred = trainer.predict(test)
    acc, f1 = _scores(pred.predictions.argmax(-1).tolist(), [r["labels"] for r in test], data.num_classes)
    return {"train_seconds": seconds, "samples_per_s": len(train) * args.epochs / seconds, "test_acc": acc,
            "test_f1_macro": f1}


def run_zoo(args: Any, data: Any, lr: float) -> dict[str, Any]:
    import lightning.pytorch as pl
    import torch

    from zoo.tasks.text import TextClassifier

    pl.seed_everything(args.seed, verbose=False)
    model = TextClassifier(encoder=args.encoder, pooling="mean", peft=_peft(args), lr=lr, weight_decay=0.01,
                           scheduler="linear", warmup_ratio=0.06, dropout=0.1)
    trainer = pl.Trainer(max_epochs=args.epochs, accelerator="auto", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0,
                         precision="bf16-mixed" if args.precision == "bf16" else "32-true")
    start = time.perf_counter()
    trainer.fit(model, data)
    seconds = time.perf_counter() - start
    preds, gold = [], []
    model.eval()
    with torch.no_grad():
        for batch in data.test_dataloader():
            batch = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in batch.items()}
            preds += model(batch).argmax(-1).tolist()
            gold += batch["label"].tolist()
    acc, f1 = _scores(preds, gold, data.num_classes)
    n_train = len(data.splits["train"])
    return {"train_seconds": seconds, "samples_per_s": n_train * args.epochs / seconds, "test_acc": acc,
            "test_f1_macro": f1}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    import torch

    from zoo.data.text import TextDataModule

    lr = args.lr or (1e-3 if args.peft == "lora" else 5e-5)
    data = TextDataModule(dataset=args.dataset, tokenizer=args.encoder, max_length=args.max_length,
                          max_samples=args.max_samples or None, batch_size=args.batch_size, eval_batch_size=64,
                          val_fraction=0.0, test_fraction=0.2, seed=args.seed)
    data.setup("fit")
    n_train = len(data.splits["train"])
    lengths = data.splits["train"].lengths
    print(f"{args.dataset}: {n_train} train / {len(data.splits['test'])} test texts, mean length "
          f"{sum(lengths) / len(lengths):.1f} tokens (max_length {args.max_length}), batch {args.batch_size}, "
          f"{args.epochs} epoch(s), peft={args.peft}, lr={lr}, {args.precision}, "
          f"torch threads {torch.get_num_threads()}",
          flush=True)
    results = {"hf_trainer": run_hf_trainer(args, data, lr), "zoo": run_zoo(args, data, lr)}
    ratio = results["zoo"]["samples_per_s"] / results["hf_trainer"]["samples_per_s"]
    print(f"{'':12} {'samples/s':>10} {'train s':>9} {'test acc':>9} {'macro-F1':>9}")
    for name, r in results.items():
        print(f"{name:12} {r['samples_per_s']:10.2f} {r['train_seconds']:9.1f} {r['test_acc']:9.4f} "
              f"{r['test_f1_macro']:9.4f}")
    print(f"zoo / Trainer throughput ratio: {ratio:.2f}x")
    return {"config": vars(args), "n_train": n_train, **results, "zoo_over_trainer_samples_per_s": ratio}


if __name__ == "__main__":
    main()
