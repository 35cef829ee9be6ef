"""The n-gram text classifiers (``fasttext``, ``tfidf``) as ``text_classification``: a request is featurised by
the export's own vectorizers (:mod:`zoo.inference.ngrams`), so a served text gets the very features the model
was trained on, with no tokenizer and no pretrained weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoo.inference.families.text import classifier_answers
from zoo.inference.family import ExportSpec, Family, FamilyError, output_axes, register_family, sample_batches
from zoo.inference.manifest import Manifest
from zoo.inference.ngrams import NgramFeaturizer
from zoo.inference.requests import text_field, top_k_field


@register_family
class NgramTextClassification(Family):
    """``{"text": ..., ["top_k": k]}`` -> label, confidence and probabilities, for the n-gram text models: the
    texts of a batch are featurised together (one sklearn call) and padded to the batch's largest bag."""

    name = "ngram_text_classification"
    task = "text_classification"
    summary = "text -> label, confidence, probabilities, from the export's own n-gram featuriser"

    @classmethod
    def describe(cls, model: Any, datamodule: Any, samples: int) -> ExportSpec:
        """The graph reads bags of n-grams (``input_ids``, ``weights``); the featuriser's settings travel in
        ``zoo_export.json`` and TF-IDF's vocabulary and idf beside it, and verification also featurises the sample
        batches' raw texts from the written folder."""
        featurizer = getattr(datamodule, "featurizer", None)
        if featurizer is None:
            raise FamilyError(f"exporting {type(model).__name__} needs its ngram_text data (the n-gram featuriser), "
                              f"not {type(datamodule).__name__}")
        names = ["input_ids", "weights"]
        pre = {"ngrams": featurizer.settings.to_json(), "feature_space": dict(model.feature_space), "pad_id": 0}
        meta = {"labels": list(model.class_names or []), "multi_label": False, "preprocessing": pre}
        raw: list[list[Any]] = []
        feeds = sample_batches(datamodule, names, samples, "text", raw)
        # a text has at most one entry per feature, plus the pad column
        return ExportSpec(names, output_axes(names, {0: "batch", 1: "sequence"}, {0: "batch"}), meta, feeds,
                          max_sequence=int(model.feature_space["num_features"]) + 1, raw=raw,
                          assets={"featurizer": featurizer})

    @classmethod
    def write_assets(cls, spec: ExportSpec, folder: Path) -> dict[str, str]:
        return spec.assets["featurizer"].save(folder)

    @classmethod
    def asset_versions(cls) -> dict[str, str]:
        import sklearn

        return {"scikit-learn": sklearn.__version__}

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        super().__init__(folder, manifest)
        self.featurizer = NgramFeaturizer.load(self.folder, manifest)

    def parse(self, item: Any) -> dict[str, Any]:
        return {"text": text_field(item), "top_k": top_k_field(item, None, len(self.meta.labels))}

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        bags = self.featurizer.bags([it["text"] for it in items])
        # at least 2 wide: a torch.export program's feature axis starts at 2 (1 would be specialised)
        width = max([2, *(len(ids) for ids, _ in bags)])
        ids = torch.zeros((len(bags), width), dtype=torch.long)
        weights = torch.zeros((len(bags), width), dtype=torch.float32)
        for i, (a, w) in enumerate(bags):
            ids[i, :len(a)] = torch.from_numpy(a)
            weights[i, :len(w)] = torch.from_numpy(w)
        return {"input_ids": ids, "weights": weights}

    def answers(self, out: torch.Tensor | None, items: list[Any], temperature: torch.Tensor) -> list[dict[str, Any]]:
        return classifier_answers(self, out, items, temperature)


__all__ = ["NgramTextClassification"]
