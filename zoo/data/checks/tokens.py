"""Checks of token classification (NER) data: duplicate and near-duplicate sentences, one sentence tagged two
ways, entity-type mix per split, length / script mix, and the same surface string tagged inconsistently."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from zoo.data.checks.duplicates import conflicting_labels, duplicate_findings, label_shift
from zoo.data.checks.findings import Finding, SplitView
from zoo.data.checks.text import near_duplicates, text_mix

#: entity surface strings up to this many words are looked for elsewhere
MAX_SURFACE_WORDS = 6

#: (words, tags, row id)
Tagged = tuple[list[str], list[str], str]


def entities(tags: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, type) of each BIO / IOB2 entity (an ``I-X`` that starts a span counts as its start)."""
    spans, start, kind = [], -1, ""
    for i, tag in enumerate([*tags, "O"]):
        inside = tag.startswith("I-") and start >= 0 and tag[2:] == kind
        if not inside:
            if start >= 0:
                spans.append((start, i, kind))
                start = -1
            if tag != "O" and tag[:2] in ("B-", "I-"):
                start, kind = i, tag[2:]
    return spans


def token_views(dm: Any) -> tuple[dict[str, SplitView], dict[str, list[str]], dict[str, list[Tagged]]]:
    """Each split of a set-up :class:`~zoo.data.text.TokenDataModule`: a view keyed by the sentence's words and
    labelled by its tags, the sentences as text, and the tagged sentences."""
    views, texts, tagged = {}, {}, {}
    for split in ("train", "val", "test"):
        items = list(getattr(dm, "tagged", {}).get(split) or [])
        if not items:
            continue
        tagged[split] = items
        texts[split] = [" ".join(w) for w, _, _ in items]
        views[split] = SplitView([i for _, _, i in items], [tuple(w) for w, _, _ in items],
                                 [tuple(t) for _, t, _ in items])
    return views, texts, tagged


def inconsistent_tagging(tagged: dict[str, list[Tagged]]) -> list[Finding]:
    """Surface strings tagged as an entity somewhere and read another way elsewhere (another type, or untagged):
    each with its readings and the rows of the minority readings."""
    surfaces: set[tuple[str, ...]] = set()
    for items in tagged.values():
        for words, tags, _ in items:
            surfaces.update(tuple(words[a:b]) for a, b, _ in entities(tags) if b - a <= MAX_SURFACE_WORDS)
    by_first: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for s in surfaces:
        by_first[s[0]].append(s)
    readings: dict[tuple[str, ...], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for items in tagged.values():
        for words, tags, ident in items:
            spans = {(a, b): k for a, b, k in entities(tags)}
            for i, w in enumerate(words):
                for s in by_first.get(w, ()):
                    j = i + len(s)
                    if tuple(words[i:j]) != s:
                        continue
                    if (i, j) in spans:
                        readings[s][spans[(i, j)]].append(ident)
                    elif all(t == "O" for t in tags[i:j]):
                        readings[s]["O"].append(ident)
    rows = []
    for s, kinds in readings.items():
        if len(kinds) < 2:
            continue
        counts = Counter({k: len(v) for k, v in kinds.items()})
        major = counts.most_common(1)[0][0]
        minority = {k: v[:20] for k, v in kinds.items() if k != major}
        rows.append({"surface": " ".join(s), "readings": dict(counts.most_common()), "majority": major,
                     "minority_rows": minority, "_n": sum(counts.values()) - counts[major]})
    if not rows:
        return []
    rows.sort(key=lambda r: (-r["_n"], r["surface"]))
    for r in rows:
        del r["_n"]
    top = rows[0]
    example = ", ".join(f"{k} x{n}" for k, n in top["readings"].items())
    return [Finding("inconsistent_tagging", "warning",
                    f"{len(rows)} entity strings are tagged more than one way, e.g. {top['surface']!r}: {example}",
                    len(rows), rows)]


def check_token_classification(dm: Any) -> tuple[dict[str, Any], list[Finding]]:
    views, texts, tagged = token_views(dm)
    found = duplicate_findings(views, "sentences")
    found += near_duplicates(texts, views, "sentences")
    found += conflicting_labels(views, "sentences")
    types = {s: SplitView(v.ids, v.keys, [tuple(k for _, _, k in entities(list(t))) for t in v.labels or []])
             for s, v in views.items()}
    labels, shift = label_shift(types, flatten=True)
    for f in shift:
        f.kind = "entity_type_shift"
    found += shift
    mix, mix_found = text_mix(texts, "sentences")
    found += mix_found
    found += inconsistent_tagging(tagged)
    return {"rows": {s: len(v) for s, v in views.items()}, "entity_types": labels, **mix}, found


__all__ = ["check_token_classification", "entities", "inconsistent_tagging", "token_views"]
