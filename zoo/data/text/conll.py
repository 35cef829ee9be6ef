"""Tagged token files: CoNLL / IOB2 (``token ... tag`` per line) and JSONL (``{"tokens": [...], "tags": [...]}``)."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from zoo.data.files import decoding, read_text, require_file
from zoo.data.text.readers import TextDataError

log = logging.getLogger("zoo.data.text")

#: (tokens, tags, line number of the sentence in its file)
Sentence = tuple[list[str], list[str], int]

BIO_MODES = ("error", "repair")
_TAG = re.compile(r"[BI]-\S+")
#: columns of a file without tabs: runs of ASCII spaces, so U+3000, U+00A0 ... stay inside a token
_SPACES = re.compile(r" +")


def check_bio_mode(bio: str) -> str:
    if bio not in BIO_MODES:
        raise TextDataError(f"--data.init_args.bio must be one of {', '.join(BIO_MODES)}; got {bio!r}")
    return bio


def _check_tag(tag: str, prev: str, where: str, bio: str) -> str:
    """``tag`` after ``prev`` under IOB2; an orphan I-X comes back as B-X when ``bio == "repair"``."""
    if tag != "O" and not _TAG.fullmatch(tag):
        raise TextDataError(f"{where}: tag {tag!r} is not IOB2 (expected O, B-TYPE or I-TYPE)")
    if tag.startswith("I-") and prev[2:] != tag[2:]:
        if bio != "repair":
            raise TextDataError(f"{where}: tag {tag!r} follows {prev!r}, which breaks BIO; an entity must start with "
                                f"B-{tag[2:]} (set --data.init_args.bio repair to turn such tags into B-{tag[2:]})")
        return "B-" + tag[2:]
    return tag


def validate_bio(tags: list[str], where: str, bio: str = "error") -> int:
    """IOB2: every tag is O, B-X or I-X, and I-X follows B-X or I-X. With ``bio="repair"`` an I-X that does not
    (an orphan, common in real corpora) becomes B-X in place; returns how many were repaired."""
    prev, repaired = "O", 0
    for j, tag in enumerate(tags):
        fixed = _check_tag(tag, prev, f"{where}, token {j + 1}", bio)
        if fixed != tag:
            tags[j] = fixed
            repaired += 1
        prev = fixed
    return repaired


def _report_repairs(path: Path, repaired: int, first: int) -> None:
    if repaired:
        log.warning("zoo: %s: repaired %d I- tag(s) that started an entity to B- (--data.init_args.bio repair); "
                    "the first at "
                    "line %d", path, repaired, first)


def read_conll(path: str | os.PathLike[str], encoding: str = "utf-8", bio: str = "error") -> list[Sentence]:
    """CoNLL / IOB2: one ``token ... tag`` per line (tag in the last column), blank line between sentences.
    Columns are split on tabs in a line that has any, else on ASCII spaces: every other character (an
    ideographic space, a no-break space) belongs to the token. Returns (tokens, tags, first line number) per
    sentence."""
    check_bio_mode(bio)
    path = Path(path)
    lines = read_text(path, encoding, TextDataError, expected="'token tag' lines").splitlines()
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start, repaired, first_repair = 1, 0, 0
    for no, raw in enumerate(lines + [""], start=1):
        line = raw.strip(" \t\r\n")
        if not line or line.startswith("-DOCSTART-"):
            if tokens:
                sentences.append((tokens, tags, start))
            tokens, tags, start = [], [], no + 1
            continue
        parts = line.split("\t") if "\t" in line else _SPACES.split(line)
        if len(parts) < 2 or not parts[0] or not parts[-1]:
            sep = "a tab" if "\t" in line else "spaces"
            raise TextDataError(f"{path} line {no}: expected 'token tag' (columns split by {sep}, tag in the last "
                                f"column), got {line!r}")
        tag = _check_tag(parts[-1], tags[-1] if tags else "O", f"{path} line {no}", bio)
        if tag != parts[-1]:
            repaired += 1
            first_repair = first_repair or no
        tokens.append(parts[0])
        tags.append(tag)
    if not sentences:
        raise TextDataError(f"{path} holds no sentences")
    _report_repairs(path, repaired, first_repair)
    return sentences


def read_token_jsonl(path: str | os.PathLike[str], encoding: str = "utf-8", bio: str = "error") -> list[Sentence]:
    check_bio_mode(bio)
    path = require_file(path, TextDataError)
    out = []
    repaired, first_repair = 0, 0
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
            fixed = validate_bio(tags, f"{path} line {no}", bio)
            if fixed:
                repaired += fixed
                first_repair = first_repair or no
            out.append(([str(t) for t in tokens], tags, no))
    if not out:
        raise TextDataError(f"{path} holds no sentences")
    _report_repairs(path, repaired, first_repair)
    return out


def read_tagged(path: str | os.PathLike[str], encoding: str = "utf-8", bio: str = "error") -> list[Sentence]:
    """Sentences from a JSONL (``.jsonl`` / ``.json``) or CoNLL (anything else) file."""
    suffix = Path(path).suffix.lower()
    read = read_token_jsonl if suffix in (".jsonl", ".json") else read_conll
    return read(path, encoding, bio)


__all__ = ["BIO_MODES", "Sentence", "check_bio_mode", "read_conll", "read_tagged", "read_token_jsonl", "validate_bio"]
