"""Checks of text classification data (the transformer and the n-gram datamodules share their splits): exact and
near duplicates, conflicting labels, label / length / script mix per split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zoo.data.checks.duplicates import conflicting_labels, duplicate_findings, label_shift
from zoo.data.checks.findings import Finding, SplitView, later_pairs
from zoo.data.checks.near import TextIndex, text_near_pairs
from zoo.data.checks.stats import categorical_shift, numeric_shift, shifted
from zoo.data.scripts import script_of

#: letters of a text read to find its main script
SCRIPT_LETTERS = 100


def main_script(text: str) -> str:
    """The script of most of the first letters of ``text`` (``LATIN``, ``CYRILLIC``, ``CJK``, ...), or ``NONE``."""
    counts: dict[str, int] = {}
    seen = 0
    for ch in text:
        s = script_of(ch)
        if s is not None:
            counts[s] = counts.get(s, 0) + 1
            seen += 1
            if seen >= SCRIPT_LETTERS:
                break
    return max(counts, key=counts.__getitem__) if counts else "NONE"


def _label_key(label: Any, names: Sequence[str]) -> Any:
    if isinstance(label, list):  # multi-label: the multi-hot vector as the tuple of its classes
        return tuple(n for n, v in zip(names, label) if v)
    return names[label] if isinstance(label, int) and 0 <= label < len(names) else label


def classification_views(dm: Any) -> tuple[dict[str, SplitView], dict[str, list[str]]]:
    """Each split of a set-up :class:`~zoo.data.text.TextDataModule` (or ``ngram_text``) as a view keyed by its
    text (with its pair), and the texts themselves."""
    names = list(dm.class_names)
    views, texts = {}, {}
    for split in ("train", "val", "test"):
        ds = dm.splits.get(split)
        # n-gram splits featurise lazily: their plain rows hold the same text, id and label without featurising
        rows = ds.plain_rows() if hasattr(ds, "plain_rows") else (getattr(ds, "rows", None) or [])
        texts[split] = [r["text"] for r in rows]
        labels = [_label_key(r["label"], names) for r in rows] if rows and "label" in rows[0] else None
        views[split] = SplitView([str(r["id"]) for r in rows], [r["text"].strip() for r in rows], labels)
    return views, texts


def near_duplicates(texts: dict[str, list[str]], views: dict[str, SplitView], what: str = "texts") -> list[Finding]:
    """Later-split texts within Jaccard 0.8 of an earlier split's text that are not exact copies."""
    found = []
    index = {s: TextIndex(texts[s]) for s in views}
    for earlier, later in later_pairs(views):
        pairs = [(j, i, sim) for j, i, sim in text_near_pairs(index[earlier], index[later])
                 if views[later].keys[j] != views[earlier].keys[i]]
        if pairs:
            rows = [{"ids": [views[later].ids[j], views[earlier].ids[i]], "jaccard": sim} for j, i, sim in pairs]
            n = len(views[later])
            found.append(Finding(
                "near_duplicates_across", "warning",
                f"{len(pairs)} of {n} {later} {what} are near-copies of {earlier} {what} (word 3-gram Jaccard >= 0.8 "
                f"after normalising case, punctuation and spaces), e.g. {rows[0]['ids'][0]} ~ {rows[0]['ids'][1]}",
                len(pairs), rows, {"split": later, "against": earlier}))
    return found


def text_mix(texts: dict[str, list[str]], what: str = "texts") -> tuple[dict[str, Any], list[Finding]]:
    """Length (characters) and main-script distribution of each split against train."""
    names = [s for s in ("train", "val", "test") if texts.get(s)]
    figures: dict[str, Any] = {"length_chars": {}, "scripts": {}}
    found = []
    if not names:
        return figures, found
    lengths = {s: [len(t) for t in texts[s]] for s in names}
    scripts = {s: [main_script(t) for t in texts[s]] for s in names}
    for other in names[1:]:
        fig = numeric_shift(lengths[names[0]], lengths[other])
        figures["length_chars"][f"{names[0]}_vs_{other}"] = fig
        if shifted(fig):
            longer = fig["other_quartiles"][1] > fig["reference_quartiles"][1]
            found.append(Finding(
                "length_shift", "warning",
                f"{other} {what} are {'longer' if longer else 'shorter'} than {names[0]} ones "
                f"(median {fig['other_quartiles'][1]:.0f} against "
                f"{fig['reference_quartiles'][1]:.0f} characters; PSI {fig['psi']:.2f}, KS p={fig['p_value']:.2g})",
                1, [], {"split": other, **fig}))
        sfig = categorical_shift(scripts[names[0]], scripts[other])
        figures["scripts"][f"{names[0]}_vs_{other}"] = sfig
        if shifted(sfig):
            share = {c: o / max(sum(sfig["other"]), 1) for c, o in zip(sfig["categories"], sfig["other"])}
            found.append(Finding(
                "script_shift", "warning",
                f"the {other} split's scripts differ from {names[0]} (PSI {sfig['psi']:.2f}): "
                + ", ".join(f"{c} {v:.0%}" for c, v in sorted(share.items(), key=lambda x: -x[1])[:3]),
                1, [], {"split": other, **sfig}))
    return figures, found


def check_text_classification(dm: Any) -> tuple[dict[str, Any], list[Finding]]:
    views, texts = classification_views(dm)
    views = {s: v for s, v in views.items() if len(v)}
    found = duplicate_findings(views, "texts")
    found += near_duplicates(texts, views)
    found += conflicting_labels(views, "texts")
    labels, shift = label_shift(views, flatten=bool(getattr(dm, "multi_label", False)))
    found += shift
    mix, mix_found = text_mix(texts)
    found += mix_found
    figures = {"rows": {s: len(v) for s, v in views.items()}, "labels": labels, **mix}
    return figures, found


__all__ = ["check_text_classification", "classification_views", "main_script", "near_duplicates", "text_mix"]
