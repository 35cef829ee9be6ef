"""Which writing system a letter belongs to, from its Unicode name: the one rule the vocabulary check
(``zoo.data.text.vocabulary``) and the data checks (``zoo.data.checks``) share."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

#: name prefixes that belong to one script (Japanese kana and CJK ideographs count as CJK, as do Korean syllables)
SCRIPT_ALIASES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "CJK", "IDEOGRAPHIC": "CJK",
                  "FULLWIDTH": "LATIN"}


@lru_cache(maxsize=65536)
def script_of(ch: str) -> str | None:
    """The script of a letter (``LATIN``, ``CYRILLIC``, ``CJK``, ...; the first word of its Unicode name), None
    for anything that is not a letter."""
    if not ch.isalpha():
        return None
    try:
        first = unicodedata.name(ch).split(" ", 1)[0]
    except ValueError:
        return "OTHER"
    return SCRIPT_ALIASES.get(first, first)


__all__ = ["SCRIPT_ALIASES", "script_of"]
