"""Recommenders (``recommendation``): the exported graph scores every item for a batch of users (or recent-item
histories), and the predictor masks what each user has seen, falls back to popularity for unknown users, and
names the top items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from zoo.errors import ZooError
from zoo.inference.family import ExportSpec, Family, FamilyError, output_axes, register_family
from zoo.inference.manifest import Manifest
from zoo.inference.requests import InferenceInputError, request_field, top_k_field

TABLES_FILE = "recsys.safetensors"


class FullSortGraph(nn.Module):
    """A recommender's exported function: ``full_sort_scores(user[, history])`` over every item."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *tensors: Tensor) -> Tensor:
        batch = dict(zip(self.names, tensors))
        return self.model.full_sort_scores(batch["user"], batch.get("history"))


class TableScorer(nn.Module):
    """A recommender whose scores are inner products, frozen as its user and item tables (LightGCN's graph
    propagation, two towers' MLPs run once at export): ``scores = users[user] @ items.T``."""

    def __init__(self, users: Tensor, items: Tensor) -> None:
        super().__init__()
        self.register_buffer("user_vectors", users.detach().float().contiguous())
        self.register_buffer("item_vectors", items.detach().float().contiguous())

    def forward(self, user: Tensor) -> Tensor:
        return self.user_vectors[user] @ self.item_vectors.T


@register_family
class Recommendation(Family):
    """``{"user": id}`` or ``{"items": [recent item ids]}`` (sequence models), optional ``top_k`` -> the top items
    with names, never an item the user has seen; an unknown user gets the most popular training items when the
    export's ``unknown_users`` is ``popular`` (as ``zoo predict``), else a 404 naming the user."""

    name = task = "recommendation"
    summary = "user id or recent items -> top items with names, seen items excluded"

    @classmethod
    def describe(cls, model: Any, datamodule: Any, samples: int) -> ExportSpec:
        if not hasattr(datamodule, "eval_view"):
            raise FamilyError(f"exporting {type(model).__name__} needs its interaction data (seen items, "
                              f"histories), not {type(datamodule).__name__}")
        history_len = model.train_batch_spec().history_len
        names = ["user"] + (["history"] if history_len else [])
        view = datamodule.eval_view("predict")
        n = datamodule.num_users
        users = torch.arange(min(n, samples))
        feeds = []
        for chunk in users.split(max(2, (len(users) + 1) // 2)):
            f = {"user": chunk}
            if history_len:
                f["history"] = view.history.last(chunk, history_len)
            feeds.append(f)
        item_texts = getattr(datamodule, "item_texts", None)
        meta: dict[str, Any] = {
            "preprocessing": {"top_k": int(model.top_k), "unknown_users": datamodule.unknown_users,
                              "history_len": int(history_len)},
            "recsys": {"user_ids": [str(u) for u in datamodule.user_ids],
                       "item_ids": [str(i) for i in datamodule.item_ids],
                       "item_names": [str(t)[:200] for t in item_texts] if item_texts else None}}
        # what predict excludes (every known interaction), the popularity fallback and the histories it scores from
        tables = {"seen_indptr": view.exclude.indptr.long(), "seen_indices": view.exclude.items.long(),
                  "popularity": datamodule.item_train_counts.float()}
        if history_len:
            tables["history"] = view.history.last(torch.arange(n), history_len)
        spec = ExportSpec(names, output_axes(names, {0: "batch"}, {0: "batch"}), meta, feeds,
                          assets={"tables": tables})
        if not history_len:
            try:
                with torch.no_grad():
                    users_v, items_v = model.retrieval_vectors(torch.arange(n))
                spec.scorer = TableScorer(users_v, items_v).eval()
                spec.meta["scorer"] = "tables"
            except (ZooError, NotImplementedError, AttributeError):
                pass  # scores that are no inner products (NeuMF): the model's own full_sort_scores is exported
        return spec

    @classmethod
    def graph(cls, model: nn.Module, inputs: list[str]) -> nn.Module:
        return FullSortGraph(model, inputs)

    @classmethod
    def write_assets(cls, spec: ExportSpec, folder: Path) -> dict[str, str]:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in spec.assets["tables"].items()}, str(folder / TABLES_FILE))
        return {"recsys": TABLES_FILE}

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        super().__init__(folder, manifest)
        from safetensors.torch import load_file

        tables = load_file(str(self.folder / manifest.files["recsys"]))
        self.indptr, self.indices = tables["seen_indptr"], tables["seen_indices"]
        self.popularity = tables["popularity"]
        self.history = tables.get("history")
        rec = manifest["recsys"]
        self.user_ids, self.item_ids = [str(u) for u in rec["user_ids"]], [str(i) for i in rec["item_ids"]]
        self.item_names = rec.get("item_names")
        self.user_index = {u: k for k, u in enumerate(self.user_ids)}
        self.item_index = {it: k for k, it in enumerate(self.item_ids) if k > 0}
        self.history_len = int(self.pre.get("history_len", 0))

    def parse(self, item: Any) -> dict[str, Any]:
        if isinstance(item, str | int) and not isinstance(item, bool):
            item = {"user": item}
        k = top_k_field(item, int(self.pre["top_k"]), len(self.item_ids) - 1)
        user = request_field(item, "user", (str, int), "a user id (string)", required=False)
        items = request_field(item, "items", list, "a list of item ids", required=False)
        if user is None and items is None:
            raise InferenceInputError("user", "missing; expected a user id, or 'items': a list of recent item ids")
        if items is not None:
            if not self.history_len:
                raise InferenceInputError("items", f"this model ({self.meta.model_class.rsplit('.', 1)[-1]}) "
                                          "recommends for known users only; send 'user'", 422)
            idx = []
            for i, it in enumerate(items):
                if str(it) not in self.item_index:
                    raise InferenceInputError(f"items[{i}]", f"unknown item id {it!r}", 404)
                idx.append(self.item_index[str(it)])
            if not idx:
                raise InferenceInputError("items", "empty; expected at least one item id")
            hist = torch.zeros(self.history_len, dtype=torch.long)
            tail = torch.tensor(idx[-self.history_len:], dtype=torch.long)
            hist[self.history_len - len(tail):] = tail
            return {"user": str(user) if user is not None else None, "index": 0, "history": hist,
                    "seen": torch.tensor(idx, dtype=torch.long), "top_k": k, "known": True}
        uid = str(user)
        index = self.user_index.get(uid)
        if index is None:
            if self.pre.get("unknown_users") != "popular":
                raise InferenceInputError("user", f"unknown user id {uid!r} (not in the training data) and this "
                                          "export has no fallback (train with --data.init_args.unknown_users "
                                          "popular)", 404)
            return {"user": uid, "index": -1, "top_k": k, "known": False}
        seen = self.indices[int(self.indptr[index]):int(self.indptr[index + 1])]
        hist = self.history[index] if self.history is not None else None
        return {"user": uid, "index": index, "history": hist, "seen": seen, "top_k": k, "known": True}

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        known = [it for it in items if it["known"]]
        feeds = {"user": torch.tensor([it["index"] for it in known], dtype=torch.long)}
        if self.history_len:
            feeds["history"] = (torch.stack([it["history"] for it in known]) if known
                                else torch.zeros(0, self.history_len, dtype=torch.long))
        return feeds

    def answers(self, out: torch.Tensor | None, items: list[Any], temperature: torch.Tensor) -> list[dict[str, Any]]:
        known = [it for it in items if it["known"]]
        ranked: list[tuple[list[float], list[int]]] = []
        if known:
            # the whole batch masked and ranked at once: per user, torch's small-tensor calls cost more than the
            # forward (docs/serving.md, "Where the time goes")
            assert out is not None
            scores = out.float().clone()
            scores[:, 0] = float("-inf")
            seen = [it["seen"] for it in known]
            rows_of = torch.repeat_interleave(torch.arange(len(known)), torch.tensor([len(s) for s in seen]))
            scores[rows_of, torch.cat(seen).long()] = float("-inf")
            top = scores.topk(min(max(it["top_k"] for it in known), scores.shape[1]), dim=-1)
            ranked = list(zip(top.values.tolist(), top.indices.tolist()))
        rows, j = [], 0
        for item in items:
            k = item["top_k"]
            if item["known"]:
                s, i = ranked[j]
                j += 1
            else:  # zoo predict's fallback for unknown users: the most popular training items, score = count
                s, i = self._popular(k)
            recs = []
            for rank, (score, idx) in enumerate(zip(s[:k], i[:k]), start=1):
                if not np.isfinite(score):
                    break
                rec = {"rank": rank, "item": self.item_ids[idx], "score": round(score, 6)}
                if self.item_names:
                    rec["name"] = self.item_names[idx]
                recs.append(rec)
            rows.append({"user": item["user"], "known_user": item["known"], "items": recs})
        return rows

    def _popular(self, k: int) -> tuple[list[float], list[int]]:
        s, i = self.popularity.float().index_fill(0, torch.tensor([0]), -1.0).topk(k)
        return s.tolist(), i.tolist()

    def info(self) -> dict[str, Any]:
        return {"num_users": len(self.user_ids), "num_items": len(self.item_ids) - 1}


__all__ = ["FullSortGraph", "Recommendation", "TableScorer"]
