"""Lexicons for CTC decoding: word lists encoded with the model's labels, the trie of token-id words, and the
flat trie tensors the beam-search kernels walk.

The trie tensors are what crnn_fast::ctc_beam_search walks (S nodes, E edges; node 0 is the root):
    offsets: (S + 1,) int64, the edges of node s are offsets[s] .. offsets[s + 1] - 1;
    labels: (E,) int64, the token of each edge, ascending within a node (the kernel binary-searches them);
    children: (E,) int64, the node each edge leads to;
    is_word: (S,) bool, whether the path to the node spells a complete word (never the root).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

import torch

from .._checks import as_token_seq


class _TrieNode:
    __slots__ = ("children", "is_word")

    def __init__(self) -> None:
        self.children: dict[int, _TrieNode] = {}
        self.is_word = False


class LexiconTrie:
    """A prefix tree over the words of a lexicon; each word is a non-empty sequence of token ids.

    LexiconTrie([[3, 1], [3, 1, 2], [4]]).is_prefix((3,)) -> True; .is_word((3,)) -> False.
    Duplicate words are allowed and count once.
    """

    def __init__(self, words) -> None:
        if isinstance(words, (str, bytes, torch.Tensor)):
            raise TypeError(f"lexicon must be an iterable of words (sequences of token ids), "
                            f"got {type(words).__name__}")
        try:
            words = list(words)
        except TypeError as exc:
            raise TypeError(f"lexicon must be an iterable of words, got {type(words).__name__}") from exc
        if not words:
            raise ValueError("lexicon is empty; pass at least one word")
        self._root = _TrieNode()
        self._words: set[tuple[int, ...]] = set()
        for i, word in enumerate(words):
            word = as_token_seq(word, f"lexicon word {i}")
            if not word:
                raise ValueError(f"lexicon word {i} is empty; words need at least one token")
            if min(word) < 0:
                raise ValueError(f"lexicon word {i} holds a negative token id {min(word)}")
            node = self._root
            for tok in word:
                node = node.children.setdefault(tok, _TrieNode())
            node.is_word = True
            self._words.add(word)
        self.token_ids = frozenset(tok for word in self._words for tok in word)

    def _find(self, tokens) -> _TrieNode | None:
        node = self._root
        for tok in tokens:
            node = node.children.get(tok)
            if node is None:
                return None
        return node

    def is_prefix(self, tokens) -> bool:
        """Whether `tokens` starts some word (the empty sequence and every complete word do)."""
        return self._find(tokens) is not None

    def is_word(self, tokens) -> bool:
        """Whether `tokens` is a complete word."""
        node = self._find(tokens)
        return node is not None and node.is_word

    @property
    def words(self) -> list[tuple[int, ...]]:
        return sorted(self._words)

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, tokens) -> bool:
        return self.is_word(tuple(tokens))

    def __repr__(self) -> str:
        return f"LexiconTrie({len(self)} words)"


class TrieTensors(NamedTuple):
    offsets: torch.Tensor
    labels: torch.Tensor
    children: torch.Tensor
    is_word: torch.Tensor


def read_word_list(path) -> list[str]:
    """The words of a text file, one per line (surrounding whitespace stripped, empty lines skipped)."""
    with open(os.fspath(path), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def encode_lexicon(words, ids: dict[str, int], *, separator: str | None = None,
                   name: str = "lexicon") -> list[tuple[int, ...]]:
    """Encode words (strings) with the class ids of their characters, dropping duplicates, keeping order.

    words: an iterable of str, or a path (pathlib.Path / os.PathLike) to a file with one word per line.
    ids: character -> class id. separator: a character words must not contain (the word separator).
    Raises TypeError/ValueError naming `name` for an empty lexicon, an empty word, a word with a character
    outside `ids`, or one holding the separator.
    """
    if isinstance(words, os.PathLike):
        words = read_word_list(words)
    elif isinstance(words, (str, bytes)):
        raise TypeError(f"{name} must be an iterable of words (str) or a pathlib.Path to a word list, got a "
                        f"single {type(words).__name__}; pass [word] or Path(file)")
    elif not isinstance(words, Iterable):
        raise TypeError(f"{name} must be an iterable of words (str), got {type(words).__name__}")
    out: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    for i, word in enumerate(words):
        if not isinstance(word, str):
            raise TypeError(f"{name} word {i} must be a str, got {type(word).__name__}")
        if not word:
            raise ValueError(f"{name} word {i} is empty; words need at least one character")
        if separator is not None and separator in word:
            raise ValueError(f"{name} word {i} ({word!r}) contains the word separator {separator!r}; list the "
                             f"words one by one (a text line is lexicon words joined by single separators)")
        missing = sorted({c for c in word if c not in ids})
        if missing:
            raise ValueError(f"{name} word {i} ({word!r}) has characters outside the charset: "
                             f"{', '.join(map(repr, missing))}")
        enc = tuple(ids[c] for c in word)
        if enc not in seen:
            seen.add(enc)
            out.append(enc)
    if not out:
        raise ValueError(f"{name} is empty; pass at least one word")
    return out


def compile_trie(words: Iterable[tuple[int, ...]] | LexiconTrie) -> TrieTensors:
    """The flat trie of token-id words (breadth-first node order, children by ascending token)."""
    if not isinstance(words, LexiconTrie):
        words = LexiconTrie(words)  # checks the words (non-empty, token ids >= 0), merges duplicates
    nodes = [words._root]
    offsets = [0]
    labels: list[int] = []
    children: list[int] = []
    i = 0
    while i < len(nodes):  # breadth-first
        node = nodes[i]
        for tok in sorted(node.children):
            labels.append(tok)
            children.append(len(nodes))
            nodes.append(node.children[tok])
        offsets.append(len(labels))
        i += 1
    return TrieTensors(torch.tensor(offsets, dtype=torch.int64), torch.tensor(labels, dtype=torch.int64),
                       torch.tensor(children, dtype=torch.int64),
                       torch.tensor([n.is_word for n in nodes], dtype=torch.bool))
