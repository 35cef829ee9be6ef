"""What each task family does around the exported graph: turn one request into tensors (``parse`` checks it,
``collate`` pads a batch), and the graph's output back into an answer (``answers``).

Everything here mirrors what zoo's datamodules and ``predict_step`` do, from the settings recorded in
``zoo_export.json``, so an exported model answers as ``zoo predict`` does; the tests compare the two.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.inference.windows import head_tail, max_context_owners, pool_windows, windows, word_windows


class InferenceInputError(ZooError, ValueError):
    """A request the model cannot answer; ``field`` names the offending field, the message what was expected."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.detail, self.status = field, message, status


def _field(item: Any, name: str, kind: type | tuple[type, ...], what: str, required: bool = True) -> Any:
    if not isinstance(item, dict):
        raise InferenceInputError("body", f"expected a JSON object with {what}, got {type(item).__name__}")
    if name not in item:
        if required:
            raise InferenceInputError(name, f"missing; expected {what}")
        return None
    value = item[name]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise InferenceInputError(name, f"expected {what}, got {type(value).__name__}")
    return value


def _top_k(item: Any, default: int | None, limit: int) -> int | None:
    k = item.get("top_k", default) if isinstance(item, dict) else default
    if k is None:
        return None
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InferenceInputError("top_k", f"expected a positive integer, got {k!r}")
    return min(k, limit)


def text_field(item: Any, name: str = "text") -> str:
    """The non-empty string of a text request (a bare string is ``{"text": ...}``)."""
    if isinstance(item, str) and name == "text":
        item = {"text": item}
    text = _field(item, name, str, "a non-empty string")
    if not text.strip():
        raise InferenceInputError(name, "empty; expected a non-empty string")
    return text


class Family:
    """Base: ``parse`` (one request -> a parsed item), ``collate`` (items -> feeds), ``answers`` (output -> dicts)."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder, self.meta = folder, meta
        self.pre = meta.get("preprocessing", {})

    def parse(self, item: Any) -> Any:
        raise NotImplementedError

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def answers(self, out: torch.Tensor, items: list[Any], temperature: torch.Tensor) -> list[dict[str, Any]]:
        raise NotImplementedError

    def logits(self, out: torch.Tensor, items: list[Any]) -> torch.Tensor:
        """One row of the graph's output per item (a family that runs several sequences per item joins them)."""
        return out


class _Text(Family):
    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        super().__init__(folder, meta)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(folder / meta["files"]["tokenizer"]))
        self.max_length = int(self.pre["max_length"])
        self.pad_id = int(self.pre.get("pad_id", 0))
        self.long_text = str(self.pre.get("long_text", "truncate"))

    def _text(self, item: Any, name: str = "text") -> str:
        return text_field(item, name)

    @staticmethod
    def _sequences(items: list[Any]) -> list[dict[str, Any]]:
        """The sequences of a batch of items: an item's ``windows`` (a long text under ``long_text: chunks``) in
        order, else the item itself."""
        return [{"input_ids": w} for it in items for w in it["windows"]] if any("windows" in it for it in items) \
            else items

    def _pad(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
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


class TextClassification(_Text):
    """``{"text": ..., ["text_pair": ...], ["top_k": k]}`` -> label, confidence and probabilities."""

    def parse(self, item: Any) -> dict[str, Any]:
        text = self._text(item)
        pair = self._text(item, "text_pair") if self.pre.get("text_pair") else None
        top_k = _top_k(item, None, len(self.meta["labels"]))
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

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return self._pad(self._sequences(items))

    def logits(self, out: torch.Tensor, items: list[Any]) -> torch.Tensor:
        if not any("windows" in it for it in items):
            return out
        doc = torch.tensor([d for d, it in enumerate(items) for _ in it["windows"]], dtype=torch.long)
        return pool_windows(out.float(), doc, str(self.pre.get("chunk_pooling", "mean")), len(items))

    def answers(self, out: torch.Tensor, items: list[Any], temperature: torch.Tensor) -> list[dict[str, Any]]:
        names = self.meta["labels"]
        scaled = self.logits(out, items).float() / temperature
        if self.meta.get("multi_label"):
            probs = scaled.sigmoid()
            th = torch.tensor(self.meta["thresholds"], dtype=torch.float32)
            return [{"labels": [names[k] for k in torch.nonzero(p >= th).flatten().tolist()],
                     "scores": {n: round(float(x), 6) for n, x in zip(names, p)}} for p in probs]
        return probability_answers(scaled.softmax(-1), items, names)


def probability_answers(probs: torch.Tensor, items: list[Any], names: list[str]) -> list[dict[str, Any]]:
    """A single-label classifier's answers from its ``[N, C]`` probabilities (also an ensemble's mixture): the
    label, its confidence and the ``top_k`` (default: every) class probabilities of each parsed item."""
    rows = []
    for p, item in zip(probs, items):
        k = item.get("top_k") or len(names)
        top = p.topk(k)
        conf, idx = p.max(-1)
        rows.append({"label": names[int(idx)], "confidence": round(float(conf), 6),
                     "probabilities": {names[i]: round(float(v), 6)
                                       for v, i in zip(top.values.tolist(), top.indices.tolist())}})
    return rows


def iob_entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) word index of each entity in an IOB2 tag sequence, chunked as seqeval's
    ``get_entities`` chunks (a stray ``I-`` starts an entity); written out because seqeval is an evaluation
    dependency the inference layer does not carry."""
    chunks, prev_tag, prev_type, begin = [], "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, etype = chunk[0], chunk[1:].split("-", maxsplit=1)[-1] or "_"
        end = (prev_tag in ("E", "S") or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
               or (prev_tag not in ("O", ".") and prev_type != etype))
        if end:
            chunks.append((prev_type, begin, i - 1))
        start = (tag in ("B", "S") or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
                 or (tag not in ("O", ".") and prev_type != etype))
        if start:
            begin = i
        prev_tag, prev_type = tag, etype
    return chunks


class TokenClassification(_Text):
    """``{"text": ...}`` -> entity spans with character offsets (the words are split as ``zoo predict`` splits
    raw sentences)."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        super().__init__(folder, meta)
        self.word_re = re.compile(self.pre["word_pattern"], re.UNICODE)

    def parse(self, item: Any) -> dict[str, Any]:
        text = self._text(item)
        spans = [(m.start(), m.end()) for m in self.word_re.finditer(text)]
        if not spans:
            raise InferenceInputError("text", "holds no words to tag")
        # a word the tokenizer reduces to nothing is read as the unknown token, as the training data reads it
        unk = self.tokenizer.unk_token or "[UNK]"
        words = [w if w.strip() else unk for w in (text[a:b] for a, b in spans)]
        if self.long_text == "chunks":
            enc = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False, truncation=False,
                                 return_attention_mask=False, return_token_type_ids=False, verbose=False)
            word_ids = [-1 if w is None else w for w in enc.word_ids()]
            wins, wids, _ = word_windows(self.tokenizer, list(enc["input_ids"]), word_ids, self.max_length,
                                         int(self.pre["chunk_overlap"]), int(self.pre["max_chunks"]))
        else:
            enc = self.tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.max_length,
                                 return_attention_mask=False, return_token_type_ids=False)
            wins, wids = [list(enc["input_ids"])], [[-1 if w is None else w for w in enc.word_ids()]]
        # each word read once, at its first piece, from the window where it has the most context; the windows
        # advance on both edges, so taking each window's owned positions in turn keeps the words in order
        owner = max_context_owners(wids)
        firsts = []
        for j, ws in enumerate(wids):
            firsts.append([p for p, w in enumerate(ws) if w >= 0 and (p == 0 or ws[p - 1] != w) and owner.get(w) == j])
        tagged = sum(map(len, firsts))
        return {"windows": wins, "firsts": firsts, "spans": spans[:tagged], "text": text,
                "untagged": len(spans) - tagged}

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return self._pad(self._sequences(items))

    def answers(self, out: torch.Tensor, items: list[Any], temperature: torch.Tensor) -> list[dict[str, Any]]:
        names = self.meta["labels"]
        probs = (out.float() / temperature).softmax(-1)
        rows, at = [], 0
        for item in items:
            # (sequence, position) of each word's first piece in its window, in word order
            seq = torch.tensor([at + j for j, f in enumerate(item["firsts"]) for _ in f], dtype=torch.long)
            pos = torch.tensor([p for f in item["firsts"] for p in f], dtype=torch.long)
            at += len(item["windows"])
            tags = [names[k] for k in out[seq, pos].argmax(-1).tolist()]
            scores = probs[seq, pos].max(-1).values.tolist()
            entities = []
            for etype, start, end in iob_entities(tags):
                a, b = item["spans"][start][0], item["spans"][end][1]
                entities.append({"type": etype, "start": a, "end": b, "text": item["text"][a:b],
                                 "score": round(min(scores[start:end + 1]), 4)})
            row: dict[str, Any] = {"entities": entities}
            if item["untagged"]:  # words past max_length (or max_chunks windows) were not read: say so
                row["untagged_words"] = item["untagged"]
            rows.append(row)
        return rows


class ImageClassification(Family):
    """``{"image": base64}`` (or raw bytes, a path, a PIL image, a uint8 array) -> label and probabilities."""

    def parse(self, item: Any) -> dict[str, Any]:
        from PIL import Image, UnidentifiedImageError

        raw = item.get("image") if isinstance(item, dict) else item
        if isinstance(item, dict) and "image" not in item:
            raise InferenceInputError("image", "missing; expected a base64-encoded PNG/JPEG/... file")
        channels = int(self.pre["channels"])
        try:
            if isinstance(raw, str) and isinstance(item, dict):
                raw = base64.b64decode(raw, validate=True)
            if isinstance(raw, bytes | bytearray):
                img: Any = Image.open(io.BytesIO(raw))
            elif isinstance(raw, str | Path):
                img = Image.open(raw)
            elif isinstance(raw, np.ndarray):
                img = Image.fromarray(raw)
            elif hasattr(raw, "convert"):
                img = raw
            else:
                raise InferenceInputError("image", f"expected a base64-encoded image file, got {type(raw).__name__}")
            array = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8).copy()
        except (binascii.Error, ValueError) as err:
            if isinstance(err, InferenceInputError):
                raise
            raise InferenceInputError("image", f"not valid base64 ({err}); expected a base64-encoded image file") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            reason = str(err).split(" <")[0]  # PIL names the in-memory buffer object: noise to a client
            raise InferenceInputError("image", f"does not decode as an image ({reason}); expected a PNG/JPEG/... "
                                      "file") from None
        if array.ndim == 2:
            array = array[:, :, None]
        pixels = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        size = self.pre.get("image_size")
        h, w = (size, size) if size else self.pre["input_size"]
        if tuple(pixels.shape[1:]) != (h, w):
            # the same resize as zoo's image data (torchvision v2, antialiased); also fits other sizes to the graph's
            from torchvision.transforms.v2 import functional as TF

            pixels = TF.resize(pixels, [h, w], antialias=True)
        return {"image": pixels.float() / 255.0, "top_k": _top_k(item, None, len(self.meta["labels"]))}

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return {"image": torch.stack([it["image"] for it in items])}

    answers = TextClassification.answers


class Recommendation(Family):
    """``{"user": id}`` or ``{"items": [recent item ids]}`` (sequence models), optional ``top_k`` -> the top items
    with names, never an item the user has seen; an unknown user gets the most popular training items when the
    export's ``unknown_users`` is ``popular`` (as ``zoo predict``), else a 404 naming the user."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        super().__init__(folder, meta)
        from safetensors.torch import load_file

        tables = load_file(str(folder / meta["files"]["recsys"]))
        self.indptr, self.indices = tables["seen_indptr"], tables["seen_indices"]
        self.popularity = tables["popularity"]
        self.history = tables.get("history")
        rec = meta["recsys"]
        self.user_ids, self.item_ids = [str(u) for u in rec["user_ids"]], [str(i) for i in rec["item_ids"]]
        self.item_names = rec.get("item_names")
        self.user_index = {u: k for k, u in enumerate(self.user_ids)}
        self.item_index = {it: k for k, it in enumerate(self.item_ids) if k > 0}
        self.history_len = int(self.pre.get("history_len", 0))

    def parse(self, item: Any) -> dict[str, Any]:
        if isinstance(item, str | int) and not isinstance(item, bool):
            item = {"user": item}
        k = _top_k(item, int(self.pre["top_k"]), len(self.item_ids) - 1)
        user = _field(item, "user", (str, int), "a user id (string)", required=False)
        items = _field(item, "items", list, "a list of item ids", required=False)
        if user is None and items is None:
            raise InferenceInputError("user", "missing; expected a user id, or 'items': a list of recent item ids")
        if items is not None:
            if not self.history_len:
                raise InferenceInputError("items", f"this model ({self.meta['model_class'].rsplit('.', 1)[-1]}) "
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
                                          "export has no fallback (train with data.unknown_users: popular)", 404)
            return {"user": uid, "index": -1, "top_k": k, "known": False}
        seen = self.indices[int(self.indptr[index]):int(self.indptr[index + 1])]
        hist = self.history[index] if self.history is not None else None
        return {"user": uid, "index": index, "history": hist, "seen": seen, "top_k": k, "known": True}

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        known = [it for it in items if it["known"]]
        feeds = {"user": torch.tensor([it["index"] for it in known], dtype=torch.long)}
        if self.history_len:
            feeds["history"] = torch.stack([it["history"] for it in known]) if known else torch.zeros(0, self.history_len, dtype=torch.long)
        return feeds

    def answers(self, out: torch.Tensor | None, items: list[Any], temperature: torch.Tensor) -> list[dict[str, Any]]:
        rows, j = [], 0
        for item in items:
            k = item["top_k"]
            if item["known"]:
                scores = out[j].float().clone()
                j += 1
                scores[0] = float("-inf")
                scores[item["seen"]] = float("-inf")
                s, i = scores.topk(k)
            else:  # zoo predict's fallback for unknown users: the most popular training items, score = count
                s, i = self.popularity.float().index_fill(0, torch.tensor([0]), -1.0).topk(k)
            recs = []
            for rank, (score, idx) in enumerate(zip(s.tolist(), i.tolist()), start=1):
                if not np.isfinite(score):
                    break
                rec = {"rank": rank, "item": self.item_ids[idx], "score": round(score, 6)}
                if self.item_names:
                    rec["name"] = self.item_names[idx]
                recs.append(rec)
            rows.append({"user": item["user"], "known_user": item["known"], "items": recs})
        return rows


FAMILIES: dict[str, type[Family]] = {
    "text_classification": TextClassification,
    "token_classification": TokenClassification,
    "image_classification": ImageClassification,
    "recommendation": Recommendation,
}

__all__ = ["FAMILIES", "Family", "ImageClassification", "InferenceInputError", "Recommendation",
           "TextClassification", "TokenClassification", "iob_entities", "probability_answers", "text_field"]
