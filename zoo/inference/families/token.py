"""Token classifiers (``token_classification``, NER): a raw text is split into words as ``zoo predict`` splits
it, each word read at its first piece (from its max-context window under ``long_text: chunks``), and the tags
returned as entity spans with character offsets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from zoo.inference.crf import join_windows, viterbi
from zoo.inference.families.text import EncoderFamily
from zoo.inference.family import ExportSpec, register_family
from zoo.inference.manifest import Manifest
from zoo.inference.requests import InferenceInputError, text_field
from zoo.inference.windows import max_context_owners, word_windows


def crf_paths(out: torch.Tensor, lengths: list[int], crf: dict[str, Any]) -> list[list[int]]:
    """The constrained Viterbi path of each row of ``out`` over its first ``lengths[i]`` positions, with the CRF
    scores recorded in ``zoo_export.json`` (the graph returns emissions; the decode is a loop over a dynamic number
    of words, which tracing into ONNX / ``torch.export`` would unroll to the traced length)."""
    mask = torch.arange(out.shape[1])[None] < torch.tensor(lengths)[:, None]
    return viterbi(out.float(), mask, torch.tensor(crf["transitions"]), torch.tensor(crf["start"]),
                   torch.tensor(crf["end"]))

#: a word as the token datamodule splits a raw sentence (zoo.data.text.words reads it from here)
WORD_RE = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]", re.UNICODE)


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


def entity_answer(tags: list[str], scores: list[float], item: dict[str, Any]) -> dict[str, Any]:
    """A text's answer: its entities with character offsets (from ``item["spans"]`` of the words) and the smallest
    word score inside each, plus the words that were not read (past ``max_length`` or ``max_chunks``)."""
    entities = []
    for etype, start, end in iob_entities(tags):
        a, b = item["spans"][start][0], item["spans"][end][1]
        entities.append({"type": etype, "start": a, "end": b, "text": item["text"][a:b],
                         "score": round(min(scores[start:end + 1]), 4)})
    row: dict[str, Any] = {"entities": entities}
    if item["untagged"]:  # words past max_length (or max_chunks windows) were not read: say so
        row["untagged_words"] = item["untagged"]
    return row


@register_family
class TokenClassification(EncoderFamily):
    """``{"text": ...}`` -> entity spans with character offsets (the words are split as ``zoo predict`` splits
    raw sentences)."""

    name = task = "token_classification"
    summary = "text -> entity spans with character offsets and scores"
    token_outputs = True

    @classmethod
    def describe(cls, model: Any, datamodule: Any, samples: int) -> ExportSpec:
        spec = super().describe(model, datamodule, samples)
        spec.meta["preprocessing"]["word_pattern"] = WORD_RE.pattern
        spec.mask_input = "attention_mask"  # padding positions carry no tag: compare the real tokens only
        crf = getattr(model, "crf", None)
        if crf is not None:  # model.crf: true: its scores decode the words' first pieces (zoo.inference.crf)
            spec.meta["crf"] = crf.export_scores()
        return spec

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        super().__init__(folder, manifest)
        self.word_re = re.compile(self.pre["word_pattern"], re.UNICODE)

    def parse(self, item: Any) -> dict[str, Any]:
        text = text_field(item)
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

    def answers(self, out: torch.Tensor | None, items: list[Any], temperature: torch.Tensor) -> list[dict[str, Any]]:
        names = self.meta.labels
        probs = (out.float() / temperature).softmax(-1)
        rows, at = [], 0
        for item in items:
            # (sequence, position) of each word's first piece in its window, in word order
            seq = torch.tensor([at + j for j, f in enumerate(item["firsts"]) for _ in f], dtype=torch.long)
            pos = torch.tensor([p for f in item["firsts"] for p in f], dtype=torch.long)
            if "crf" in self.meta:  # each window's words decoded alone by the CRF, as the eager model decodes them
                em = [out[at + j, f] for j, f in enumerate(item["firsts"])]
                packed = torch.nn.utils.rnn.pad_sequence(em, batch_first=True)
                ids = join_windows(crf_paths(packed, [len(f) for f in item["firsts"]], self.meta["crf"]), names)
            else:
                ids = out[seq, pos].argmax(-1).tolist()
            at += len(item["windows"])
            tags = [names[k] for k in ids]
            scores = probs[seq, pos].gather(-1, torch.tensor(ids, dtype=torch.long)[:, None]).squeeze(-1).tolist()
            rows.append(entity_answer(tags, scores, item))
        return rows


__all__ = ["WORD_RE", "TokenClassification", "crf_paths", "entity_answer", "iob_entities"]
