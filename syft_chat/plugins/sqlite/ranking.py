"""Relevance of search hits: BM25 over the rows being ranked, computed here.

FTS5's own ``bm25()`` first counts every document that holds each query term (its
IDF), which is a pass over the term's whole hit list: ~10-20 ms for a word found in a
third of a million messages, however few rows are then ranked. Search ranks a bounded
window of the newest hits instead (``order="relevance"``), so the document frequencies
are taken within that window too, and the score is computed here from the rows' text:
the cost is the window's, never the history's.

Words are compared as FTS5's ``unicode61`` tokenizer indexes them (case folded,
diacritics removed, letters and digits only); ``word*`` counts the words it prefixes.
Lower is better, as with FTS5's ``bm25()``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence

__all__ = ["bm25_scores", "fold", "plain_terms"]

_K1 = 1.2
_B = 0.75
_TOKEN = re.compile(r"[^\W_]+")
_ASCII_WORD = re.compile(r"[a-z0-9]+")


def fold(text: str) -> str:
    """``text`` case folded and without diacritics (``unicode61``'s defaults)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _tokens(text: str) -> list[str]:
    folded = fold(text)
    return (_ASCII_WORD if folded.isascii() else _TOKEN).findall(folded)


def plain_terms(query: str) -> list[tuple[str, bool]]:
    """The ``(word, is_prefix)`` terms of a plain (not raw) search query, folded; each
    word of several tokens (``e-mail``) counts as its tokens."""
    terms: list[tuple[str, bool]] = []
    for word in query.split():
        prefix = word.endswith("*")
        tokens = _tokens(word.rstrip("*"))
        for i, token in enumerate(tokens):
            terms.append((token, prefix and i == len(tokens) - 1))
    return terms


def bm25_scores(texts: Sequence[str], terms: Sequence[tuple[str, bool]]) -> list[float]:
    """Minus the BM25 score of each of ``texts`` for ``terms``, with the documents'
    number and frequencies counted among ``texts`` (lower is a better match)."""
    docs = [_tokens(t) for t in texts]
    n = len(docs)
    if not n or not terms:
        return [0.0] * n
    average = sum(len(d) for d in docs) / n or 1.0
    counts: list[list[int]] = []
    for word, prefix in terms:
        if prefix:
            counts.append([sum(1 for tok in d if tok.startswith(word)) for d in docs])
        else:
            counts.append([d.count(word) for d in docs])
    scores = [0.0] * n
    for tf in counts:
        having = sum(1 for c in tf if c)
        idf = math.log((n - having + 0.5) / (having + 0.5) + 1.0)
        for i, c in enumerate(tf):
            if c:
                norm = c + _K1 * (1 - _B + _B * len(docs[i]) / average)
                scores[i] -= idf * c * (_K1 + 1) / norm
    return scores
