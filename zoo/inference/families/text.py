"""Text classifiers on a Hugging Face encoder (``text_classification``): the tokenizer travels with the export,
and a long text is read as the run's data read it (``data.long_text``: truncate, head_tail or chunks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoo.inference.family import ExportSpec, Family, output_axes, register_family, sample_batches
from zoo.inference.manifest import Manifest
from zoo.inference.requests import InferenceInputError, conformal_of, probability_answers, text_field, top_k_field
from zoo.inference.windows import head_tail, pool_windows, windows


def text_preprocessing(datamodule: Any) -> dict[str, Any]:
    """What a predictor repeats of the datamodule's tokenization: length, padding and long-text handling."""
    tok = datamodule.tokenizer
    long_text = str(getattr(datamodule, "long_text", "truncate"))
    pre: dict[str, Any] = {"max_length": int(datamodule.max_length), "pad_id": int(tok.pad_token_id or 0),
                           "text_pair": bool(getattr(datamodule, "text_pair_column", None)), "long_text": long_text}
    if long_text == "chunks":
        pre["chunk_overlap"], pre["max_chunks"] = int(datamodule.chunk_overlap), int(datamodule.max_chunks)
    return pre


class EncoderFamily(Family):
    """What the encoder families share: the tokenizer written beside the graph and read back, padding."""

    token_outputs = False

    @classmethod
    def describe(cls, model: Any, datamodule: Any, samples: int) -> ExportSpec:
        pre = text_preprocessing(datamodule)
        names = ["input_ids", "attention_mask"] + (["token_type_ids"] if pre["text_pair"] else [])
        dynamic = output_axes(names, {0: "batch", 1: "sequence"},
                              {0: "batch", 1: "sequence"} if cls.token_outputs else {0: "batch"})
        meta = {"labels": list(model.class_names or []), "preprocessing": pre}
        return ExportSpec(names, dynamic, meta, sample_batches(datamodule, names, samples),
                          max_sequence=int(datamodule.max_length), assets={"tokenizer": datamodule.tokenizer})

    @classmethod
    def write_assets(cls, spec: ExportSpec, folder: Path) -> dict[str, str]:
        spec.assets["tokenizer"].save_pretrained(str(folder / "tokenizer"))
        return {"tokenizer": "tokenizer"}

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        super().__init__(folder, manifest)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder / manifest.files["tokenizer"]))
        self.max_length = int(self.pre["max_length"])
        self.pad_id = int(self.pre.get("pad_id", 0))
        self.long_text = str(self.pre.get("long_text", "truncate"))

    @staticmethod
    def _sequences(items: list[Any]) -> list[dict[str, Any]]:
        """The sequences of a batch of items: an item's ``windows`` (a long text under ``long_text: chunks``) in
        order, else the item itself."""
        if any("windows" in it for it in items):
            return [{"input_ids": w} for it in items for w in it["windows"]]
        return items

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        rows = self._sequences(items)
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.as_tensor(r["input_ids"])
            mask[i, :n] = 1
            if "token_type_ids" in r:
                types[i, :n] = torch.as_tensor(r["token_type_ids"])
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def classifier_answers(family: Family, out: torch.Tensor, items: list[Any],
                       temperature: torch.Tensor) -> list[dict[str, Any]]:
    """Label, confidence and probabilities (single-label), or the labels over their thresholds (multi-label)."""
    names = family.meta.labels
    scaled = family.logits(out, items).float() / temperature
    if family.meta.get("multi_label"):
        probs = scaled.sigmoid()
        th = torch.tensor(family.meta["thresholds"], dtype=torch.float32)
        return [{"labels": [names[k] for k in torch.nonzero(p >= th).flatten().tolist()],
                 "scores": {n: round(float(x), 6) for n, x in zip(names, p)}} for p in probs]
    return probability_answers(scaled.softmax(-1), items, names, conformal_of(family.meta, temperature))


@register_family
class TextClassification(EncoderFamily):
    """``{"text": ..., ["text_pair": ...], ["top_k": k]}`` -> label, confidence and probabilities."""

    name = task = "text_classification"
    summary = "text (+ text_pair) -> label, confidence, probabilities (multi-label: labels over thresholds)"

    @classmethod
    def describe(cls, model: Any, datamodule: Any, samples: int) -> ExportSpec:
        spec = super().describe(model, datamodule, samples)
        spec.meta["multi_label"] = bool(model.multi_label)
        spec.meta["thresholds"] = [float(x) for x in model.thresholds]
        if spec.meta["preprocessing"]["long_text"] == "chunks":
            spec.meta["preprocessing"]["chunk_pooling"] = str(model.chunk_pooling)
        return spec

    def parse(self, item: Any) -> dict[str, Any]:
        text = text_field(item)
        pair = text_field(item, "text_pair") if self.pre.get("text_pair") else None
        top_k = top_k_field(item, None, len(self.meta.labels))
        if pair is None and self.long_text != "truncate":  # read a long text as the run's data read it
            body = self.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
            if self.long_text == "head_tail":
                return {"input_ids": head_tail(self.tokenizer, body, self.max_length), "top_k": top_k}
            return {"windows": windows(self.tokenizer, body, self.max_length, int(self.pre["chunk_overlap"]),
                                       int(self.pre["max_chunks"])), "top_k": top_k}
        args = (text, pair) if pair is not None else (text,)
        enc = self.tokenizer(*args, truncation=True, max_length=self.max_length,
                             return_token_type_ids=pair is not None, return_attention_mask=False)
        return {**{k: list(v) for k, v in enc.items()}, "top_k": top_k}

    def parse_many(self, items: list[Any]) -> list[Any]:
        # a fast tokenizer encodes a list in one Rust call, on every core and without the GIL: per request it
        # cost the server about a third of a batch's time (docs/serving.md, "Where the time goes")
        if self.pre.get("text_pair") or self.long_text != "truncate" or not self.tokenizer.is_fast:
            return super().parse_many(items)
        out: list[Any] = []
        texts, slots = [], []
        for item in items:
            try:
                text = text_field(item)
                out.append({"top_k": top_k_field(item, None, len(self.meta.labels))})
                texts.append(text)
                slots.append(len(out) - 1)
            except InferenceInputError as err:
                out.append(err)
        if texts:
            enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_attention_mask=False,
                                 return_token_type_ids=False)
            for slot, ids in zip(slots, enc["input_ids"]):
                out[slot]["input_ids"] = ids
        return out

    def logits(self, out: torch.Tensor, items: list[Any]) -> torch.Tensor:
        if not any("windows" in it for it in items):
            return out
        doc = torch.tensor([d for d, it in enumerate(items) for _ in it["windows"]], dtype=torch.long)
        return pool_windows(out.float(), doc, str(self.pre.get("chunk_pooling", "mean")), len(items))

    def answers(self, out: torch.Tensor | None, items: list[Any], temperature: torch.Tensor) -> list[dict[str, Any]]:
        return classifier_answers(self, out, items, temperature)


__all__ = ["EncoderFamily", "TextClassification", "classifier_answers", "text_preprocessing"]
