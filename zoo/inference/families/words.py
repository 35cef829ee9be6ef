"""Word-level CRF taggers (``word_tagging``: ``crf_tagger``): a raw text is split into words as ``zoo predict``
splits it, featurised by :class:`~zoo.inference.word_features.WordFeaturiser` with the SentencePiece model copied
beside the graph, and the graph's emissions decoded by the CRF's constrained Viterbi in :meth:`answers`.

The decode runs here, not in the graph: a Viterbi loop over a dynamic number of words does not survive tracing
into ONNX / ``torch.export`` (it would be unrolled to the traced length), while the transition scores are a few
numbers in ``zoo_export.json`` and the same :func:`~zoo.inference.crf.viterbi` decodes eager and exported models.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch

from zoo.inference.crf import join_windows
from zoo.inference.families.token import WORD_RE, crf_paths, entity_answer
from zoo.inference.family import ExportSpec, Family, register_family, sample_batches
from zoo.inference.manifest import Manifest
from zoo.inference.requests import InferenceInputError, text_field
from zoo.inference.windows import max_context_owners, word_spans_of
from zoo.inference.word_features import SP_MODEL_FILE, featuriser_from

FEATURES = ("input_ids", "chars", "pieces")


@register_family
class WordTagging(Family):
    """``{"text": ...}`` -> entity spans with character offsets, from a word-level tagger with a CRF."""

    name = "word_tagging"
    task = "token_classification"
    summary = "text -> entity spans with character offsets and scores (word features, CRF decoded by Viterbi)"

    @classmethod
    def describe(cls, model: Any, datamodule: Any, samples: int) -> ExportSpec:
        feats = datamodule.tokenizer
        names = ["input_ids", "attention_mask", "chars"] + (["pieces"] if feats.config()["pieces"] else [])
        dynamic: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
        dynamic["chars"][2] = "chars"
        if "pieces" in dynamic:
            dynamic["pieces"][2] = "pieces"
        dynamic["output"] = {0: "batch", 1: "sequence"}
        pre: dict[str, Any] = {"max_length": int(datamodule.max_length), "long_text": str(datamodule.long_text),
                               "features": feats.config(), "word_pattern": WORD_RE.pattern}
        if pre["long_text"] == "chunks":
            pre["chunk_overlap"], pre["max_chunks"] = int(datamodule.chunk_overlap), int(datamodule.max_chunks)
        meta = {"labels": list(model.class_names or []), "preprocessing": pre, "crf": model.crf.export_scores()}
        return ExportSpec(names, dynamic, meta, sample_batches(datamodule, names, samples),
                          max_sequence=int(datamodule.max_length), mask_input="attention_mask",
                          assets={"sentencepiece": feats.sp_model})

    @classmethod
    def write_assets(cls, spec: ExportSpec, folder: Path) -> dict[str, str]:
        if not spec.assets.get("sentencepiece"):
            return {}
        shutil.copyfile(spec.assets["sentencepiece"], folder / SP_MODEL_FILE)
        return {"sentencepiece": SP_MODEL_FILE}

    @classmethod
    def asset_versions(cls) -> dict[str, str]:
        from importlib.metadata import version

        return {"sentencepiece": version("sentencepiece")}

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        super().__init__(folder, manifest)
        sp = manifest.files.get("sentencepiece")
        self.featuriser = featuriser_from(self.pre["features"], self.folder / sp if sp else None)
        self.word_re = re.compile(self.pre["word_pattern"], re.UNICODE)
        self.max_length = int(self.pre["max_length"])
        self.crf = manifest["crf"]

    def parse(self, item: Any) -> dict[str, Any]:
        text = text_field(item)
        spans = [(m.start(), m.end()) for m in self.word_re.finditer(text)]
        if not spans:
            raise InferenceInputError("text", "holds no words to tag")
        feats = self.featuriser.features([text[a:b] for a, b in spans])
        if self.pre.get("long_text") == "chunks":
            wins = [list(range(s, e)) for s, e in word_spans_of([1] * len(spans), self.max_length,
                                                                int(self.pre["chunk_overlap"]),
                                                                int(self.pre["max_chunks"]))]
        else:
            wins = [list(range(min(len(spans), self.max_length)))]
        owner = max_context_owners(wins)
        windows = [{k: [v[i] for i in w] for k, v in feats.items()} for w in wins]
        owned = [[p for p, i in enumerate(w) if owner.get(i) == j] for j, w in enumerate(wins)]
        tagged = len(owner)
        return {"windows": windows, "owned": owned, "spans": spans[:tagged], "text": text,
                "untagged": len(spans) - tagged}

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        rows = [w for it in items for w in it["windows"]]
        width = max(len(r["input_ids"]) for r in rows)
        out = {"input_ids": torch.zeros((len(rows), width), dtype=torch.long),
               "attention_mask": torch.zeros((len(rows), width), dtype=torch.long)}
        for key in ("chars", "pieces"):
            if key in rows[0]:
                inner = max(len(x) for r in rows for x in r[key])
                out[key] = torch.zeros((len(rows), width, inner), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            out["input_ids"][i, :n] = torch.as_tensor(r["input_ids"])
            out["attention_mask"][i, :n] = 1
            for key in ("chars", "pieces"):
                for j, x in enumerate(r.get(key) or []):
                    out[key][i, j, :len(x)] = torch.as_tensor(x)
        return out

    def answers(self, out: torch.Tensor | None, items: list[Any], temperature: torch.Tensor) -> list[dict[str, Any]]:
        names = self.meta.labels
        lengths = [len(w["input_ids"]) for it in items for w in it["windows"]]
        paths = crf_paths(out, lengths, self.crf)
        probs = (out.float() / temperature).softmax(-1)
        rows, at = [], 0
        for item in items:
            # each word from the window it is read from, in word order
            where = [(at + j, p) for j, owned in enumerate(item["owned"]) for p in owned]
            ids = join_windows([[paths[at + j][p] for p in owned] for j, owned in enumerate(item["owned"])], names)
            tags = [names[k] for k in ids]
            scores = [float(probs[r, p, k]) for (r, p), k in zip(where, ids)]
            at += len(item["windows"])
            rows.append(entity_answer(tags, scores, item))
        return rows


__all__ = ["WordTagging"]
