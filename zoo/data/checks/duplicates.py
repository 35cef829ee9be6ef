"""Exact duplicates within and across splits, conflicting labels, and the label-mix shift: one pass over
hashable keys, so linear in the number of rows (no pairwise comparison)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable

from zoo.data.checks.findings import Finding, SplitView, later_pairs, splits_in_order
from zoo.data.checks.stats import categorical_shift, shifted


def _positions(views: dict[str, SplitView]) -> dict[Hashable, list[tuple[str, int]]]:
    where: dict[Hashable, list[tuple[str, int]]] = defaultdict(list)
    for split in splits_in_order(views):
        for i, key in enumerate(views[split].keys):
            where[key].append((split, i))
    return where


def duplicate_findings(views: dict[str, SplitView], what: str = "rows") -> list[Finding]:
    """Rows whose input repeats one in the same split (``duplicates_within``: each group of ids), and rows of a
    later split whose input is in an earlier one (``duplicates_across``: [later id, earlier id])."""
    where = _positions(views)
    found: list[Finding] = []
    for split in splits_in_order(views):
        groups = []
        for places in where.values():
            ids = [views[s].ids[i] for s, i in places if s == split]
            if len(ids) > 1:
                groups.append(ids)
        if groups:
            extra = sum(len(g) - 1 for g in groups)
            found.append(Finding("duplicates_within", "warning",
                                 f"{extra} {split} {what} repeat another {split} row ({len(groups)} groups), e.g. "
                                 f"{' = '.join(groups[0][:3])}", extra, groups, {"split": split}))
    for earlier, later in later_pairs(views):
        pairs = []
        for places in where.values():
            first = next((views[s].ids[i] for s, i in places if s == earlier), None)
            if first is not None:
                pairs += [[views[s].ids[i], first] for s, i in places if s == later]
        if pairs:
            n = len(views[later])
            found.append(Finding(
                "duplicates_across", "warning",
                f"{len(pairs)} of {n} {later} {what} ({len(pairs) / n:.1%}) also occur in {earlier}, e.g. "
                f"{pairs[0][0]} = {pairs[0][1]}: {later} scores are inflated (data.dedupe: across drops them)",
                len(pairs), pairs, {"split": later, "against": earlier, "share": round(len(pairs) / n, 4)}))
    return found


def conflicting_labels(views: dict[str, SplitView], what: str = "inputs") -> list[Finding]:
    """Groups of identical inputs (any split) that carry different labels: [[id, label], ...] per group."""
    if any(v.labels is None for v in views.values()):
        return []
    groups = []
    for places in _positions(views).values():
        if len(places) < 2:
            continue
        labels = {views[s].labels[i] for s, i in places}  # type: ignore[index]
        if len(labels) > 1:
            groups.append([[views[s].ids[i], _label_text(views[s].labels[i])] for s, i in places])  # type: ignore
    if not groups:
        return []
    rows = sum(len(g) for g in groups)
    example = ", ".join(f"{i} ({lab})" for i, lab in groups[0][:3])
    return [Finding("conflicting_labels", "warning",
                    f"{len(groups)} identical {what} carry different labels ({rows} rows), e.g. {example}",
                    len(groups), groups)]


def _label_text(label: Hashable) -> str:
    return "|".join(map(str, label)) if isinstance(label, tuple) else str(label)


def label_shift(views: dict[str, SplitView], flatten: bool = False) -> tuple[dict[str, object], list[Finding]]:
    """Label counts per split and each later split's PSI / chi-square against train; a finding where they
    differ beyond chance (:func:`zoo.data.checks.stats.shifted`). ``flatten``: a label is a tuple of several
    (multi-label classes, entity types) counted one by one."""
    if any(v.labels is None for v in views.values()):
        return {}, []

    def values(split: str) -> list[Hashable]:
        labels = views[split].labels or []
        return [x for lab in labels for x in lab] if flatten else list(labels)

    figures: dict[str, object] = {}
    found = []
    names = splits_in_order(views)
    for other in names[1:]:
        fig = categorical_shift(values(names[0]), values(other))
        figures[f"{names[0]}_vs_{other}"] = fig
        if shifted(fig):
            ref, oth = fig["reference"], fig["other"]
            moved = max(range(len(ref)), key=lambda k: abs(oth[k] / max(sum(oth), 1) - ref[k] / max(sum(ref), 1)))
            found.append(Finding(
                "label_shift", "warning",
                f"the {other} label mix differs from {names[0]} (PSI {fig['psi']:.2f}, chi-square "
                f"p={fig['p_value']:.2g}): {fig['categories'][moved]} is {oth[moved] / max(sum(oth), 1):.1%} of "
                f"{other} against "
                f"{ref[moved] / max(sum(ref), 1):.1%} of {names[0]}", 1, [], {"split": other, **fig}))
    return figures, found


__all__ = ["conflicting_labels", "duplicate_findings", "label_shift"]
