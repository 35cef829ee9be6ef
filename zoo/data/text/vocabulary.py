"""Does the encoder's vocabulary fit the data? Checked once at data set-up, on the training split.

Figures: the unknown-token rate, characters per token, the share of texts longer than ``max_length``, the dominant
Unicode scripts of the data's letters and the share of the vocabulary's letters in each of them. When they do not
fit (the data's main script is rare in the vocabulary, or many tokens are unknown), one warning line says what to
do; an English encoder on English text stays silent.

A letter's script is the first word of its Unicode name (``LATIN SMALL LETTER A`` -> LATIN, ``CJK UNIFIED
IDEOGRAPH-4E2D`` -> CJK): the standard library has no script property, and the name prefix is that property for
every script a text classifier meets in practice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from zoo.data.scripts import script_of

#: the vocabulary holds less than this share of letters in the data's main script: the encoder never learned it
MIN_VOCAB_SHARE = 0.05
#: unknown tokens above this share of all tokens
MAX_UNK_RATE = 0.05
#: fewer characters per token than this (outside CJK, where a character is a word) means the vocabulary cuts the
#: data's words into small pieces: MiniLM's English vocabulary gives about 4 on English news, 3.1 on tweets, 2.4-2.7
#: on German, Finnish, Indonesian or French news
MIN_CHARS_PER_TOKEN = 2.8
#: texts and characters looked at (the figures are shares; a sample is enough)
SAMPLE_TEXTS = 2000




def script_shares(texts: Sequence[str]) -> dict[str, float]:
    """Share of the letters of ``texts`` in each script, largest first."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(s for s in map(script_of, text) if s is not None)
    total = sum(counts.values()) or 1
    return {s: round(n / total, 4) for s, n in counts.most_common()}


def vocabulary_scripts(tokenizer: Any) -> dict[str, float]:
    """Share of the vocabulary's letters in each script (sub-word markers ``##``, ``▁``, ``Ġ`` ignored)."""
    pieces = [t.replace("##", "").replace("\u2581", "").replace("\u0120", "") for t in tokenizer.get_vocab()]
    return script_shares(pieces)


def vocabulary_report(tokenizer: Any, texts: Sequence[str], max_length: int, sample: int = SAMPLE_TEXTS
                      ) -> dict[str, Any]:
    """The figures for ``texts`` under ``tokenizer`` (a deterministic sample of at most ``sample`` texts)."""
    step = max(1, len(texts) // sample)
    chosen = list(texts[::step][:sample])
    ids = tokenizer(chosen, add_special_tokens=False, truncation=False, return_attention_mask=False,
                    verbose=False)["input_ids"] if chosen else []
    tokens = sum(len(x) for x in ids)
    unk = tokenizer.unk_token_id
    unknown = sum(sum(1 for t in x if t == unk) for x in ids) if unk is not None else 0
    chars = sum(len("".join(t.split())) for t in chosen)
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    data, vocab = script_shares(chosen), vocabulary_scripts(tokenizer)
    return {
        "texts_checked": len(chosen),
        "unknown_token_rate": round(unknown / max(tokens, 1), 4),
        "chars_per_token": round(chars / max(tokens, 1), 3),
        "share_longer_than_max_length": round(sum(len(x) > budget for x in ids) / max(len(ids), 1), 4),
        "data_scripts": dict(list(data.items())[:5]),
        "vocabulary_scripts": dict(list(vocab.items())[:5]),
        "vocabulary_share_of_data_script": {s: vocab.get(s, 0.0) for s in list(data)[:3]},
    }


#: scripts of the 16 languages Universal Sentence Encoder multilingual v3 was trained on (ar, de, en, es, fr, it,
#: ja, ko, nl, pl, pt, ru, th, tr, zh-cn, zh-tw): the ``use_multilingual`` backbone
USE_M3_SCRIPTS = ("LATIN", "CJK", "CYRILLIC", "ARABIC", "THAI")


def recommended_models(report: dict[str, Any], task: str = "classification") -> list[str]:
    """The shipped models that fit data whose script the encoder's vocabulary does not cover, best first:
    for entities (``task="token"``) the ``crf_tagger``, which learns character and subword features from scratch;
    for classes the n-gram models (any script), ``use_multilingual`` where its 16 languages' scripts are the
    data's, and an ensemble of them."""
    if task == "token":
        return ["crf_tagger (recipes/text/ner_crf.yaml)"]
    main = next(iter(report.get("data_scripts") or {}), None)
    out = ["tfidf (recipes/text/*_tfidf.yaml)", "fasttext (recipes/text/*_fasttext.yaml)"]
    if main in USE_M3_SCRIPTS:
        out.append("use_multilingual (recipes/text/*_use.yaml)")
    return [*out, "a `zoo ensemble` of those runs"]


def _advice(report: dict[str, Any], task: str) -> str:
    models = recommended_models(report, task)
    what = "entities in this script" if task == "token" else "this data"
    return (f"for {what} use {' or '.join(models[:1]) if task == 'token' else ', '.join(models)}; or a multilingual "
            "encoder (`model.init_args.encoder: <local dir or hub id>`, with the same `data.init_args.tokenizer`)")


def vocabulary_warning(report: dict[str, Any], encoder: str, task: str = "classification") -> str | None:
    """One line when the vocabulary does not fit the data, naming the shipped model that does, else None.
    ``task``: ``classification`` (text classes) or ``token`` (entities)."""
    advice = _advice(report, task)
    data = report["data_scripts"]
    if data:
        main, share = next(iter(data.items()))
        in_vocab = report["vocabulary_share_of_data_script"].get(main, 0.0)
        if share >= 0.3 and in_vocab < MIN_VOCAB_SHARE:
            top = next(iter(report["vocabulary_scripts"] or {"no": 0}))
            return (f"zoo: {share:.0%} of the letters are {main} and the vocabulary of {encoder} was built on {top} "
                    f"text ({in_vocab:.1%} of its letters are {main}; {report['unknown_token_rate']:.0%} unknown "
                    f"tokens, {report['chars_per_token']:.1f} characters per token): {advice}")
    if report["unknown_token_rate"] > MAX_UNK_RATE:
        return (f"zoo: {report['unknown_token_rate']:.0%} of the tokens are unknown to the vocabulary of {encoder}: "
                f"{advice}")
    if data and next(iter(data)) != "CJK" and report["chars_per_token"] < MIN_CHARS_PER_TOKEN:
        return (f"zoo: the vocabulary of {encoder} cuts this data into pieces of {report['chars_per_token']:.1f} "
                f"characters on average (about 4 on text in the vocabulary's own language), so it was likely built "
                f"for another language: {advice}")
    return None


__all__ = ["USE_M3_SCRIPTS", "recommended_models", "script_of", "script_shares", "vocabulary_report",
           "vocabulary_scripts", "vocabulary_warning"]
