"""Tagged token files: CoNLL / IOB2 (``token ... tag`` per line) and JSONL (``{"tokens": [...], "tags": [...]}``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from zoo.data.files import decoding, read_text, require_file
from zoo.data.text.readers import TextDataError

#: (tokens, tags, line number of the sentence in its file)
Sentence = tuple[list[str], list[str], int]


def validate_bio(tags: list[str], where: str) -> None:
    """IOB2: every tag is O, B-X or I-X, and I-X follows B-X or I-X."""
    prev = "O"
    for j, tag in enumerate(tags):
        if tag != "O" and not re.fullmatch(r"[BI]-\S+", tag):
            raise TextDataError(f"{where}, token {j + 1}: tag {tag!r} is not IOB2 (expected O, B-TYPE or I-TYPE)")
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            raise TextDataError(f"{where}, token {j + 1}: tag {tag!r} follows {prev!r}, which breaks BIO; an entity "
                                f"must start with B-{tag[2:]}")
        prev = tag


def read_conll(path: str | os.PathLike[str], encoding: str = "utf-8") -> list[Sentence]:
    """CoNLL / IOB2: one ``token ... tag`` per line (tag in the last column), blank line between sentences.
    Returns (tokens, tags, first line number) per sentence."""
    path = Path(path)
    lines = read_text(path, encoding, TextDataError, expected="'token tag' lines").splitlines()
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 1
    for no, line in enumerate(lines + [""], start=1):
        line = line.strip()
        if not line or line.startswith("-DOCSTART-"):
            if tokens:
                sentences.append((tokens, tags, start))
            tokens, tags, start = [], [], no + 1
            continue
        parts = line.split()
        if len(parts) < 2:
            raise TextDataError(f"{path} line {no}: expected 'token tag' (tag in the last column), got {line!r}")
        tokens.append(parts[0])
        tags.append(parts[-1])
        try:
            validate_bio(tags, f"{path} line {no}")
        except TextDataError as err:
            raise TextDataError(str(err).replace(f", token {len(tags)}", "")) from None
    if not sentences:
        raise TextDataError(f"{path} holds no sentences")
    return sentences


def read_token_jsonl(path: str | os.PathLike[str], encoding: str = "utf-8") -> list[Sentence]:
    path = require_file(path, TextDataError)
    out = []
    with decoding(path, encoding, TextDataError, expected='JSON lines {"tokens": [...], "tags": [...]}'), \
            open(path, encoding=encoding) as fh:
        for no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise TextDataError(f"{path} line {no}: not JSON ({err.msg})") from None
            tokens, tags = obj.get("tokens"), obj.get("tags", obj.get("ner_tags"))
            if not isinstance(tokens, list) or not isinstance(tags, list) or len(tokens) != len(tags) or not tokens:
                raise TextDataError(f"{path} line {no}: expected {{\"tokens\": [...], \"tags\": [...]}} of equal, "
                                    "non-zero length")
            tags = [str(t) for t in tags]
            validate_bio(tags, f"{path} line {no}")
            out.append(([str(t) for t in tokens], tags, no))
    if not out:
        raise TextDataError(f"{path} holds no sentences")
    return out


def read_tagged(path: str | os.PathLike[str], encoding: str = "utf-8") -> list[Sentence]:
    """Sentences from a JSONL (``.jsonl`` / ``.json``) or CoNLL (anything else) file."""
    suffix = Path(path).suffix.lower()
    return read_token_jsonl(path, encoding) if suffix in (".jsonl", ".json") else read_conll(path, encoding)


__all__ = ["Sentence", "read_conll", "read_tagged", "read_token_jsonl", "validate_bio"]
