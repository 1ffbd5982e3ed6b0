"""Real English text for synthetic text lines and the character LM: paragraphs from Debian packages that
carry prose.

Sources (installed by scripts/install_training_data.sh):
- fortunes: quotations, jokes and literature excerpts (/usr/share/games/fortunes);
- dict-gcide: the Collaborative International Dictionary of English (Webster's 1913 and WordNet):
  definitions and the quotations that illustrate them;
- dict-devil: Ambrose Bierce's "The Devil's Dictionary"; dict-jargon: the Jargon File.
Never read: /usr/share/common-licenses (kept for an outside evaluation).

Paragraphs are folded to printable ASCII (typographic quotes and dashes to their ASCII forms; a paragraph
with anything else left is dropped). The split is by paragraph: stable_hash(paragraph) % HELDOUT_MOD == 0 is
the test split's, never rendered for training nor put into the LM.
"""

from __future__ import annotations

import functools
import glob
import gzip
import os
import random
import re
import unicodedata
import zlib
from collections.abc import Iterator, Sequence

FORTUNES_DIR = "/usr/share/games/fortunes"
DICTD_DIR = "/usr/share/dictd"
DICTD_SOURCES = ("gcide", "devil", "jargon")
FORBIDDEN_ROOT = "/usr/share/common-licenses"
HELDOUT_MOD = 10
# Fortune files that are pictures or lists rather than prose.
_SKIP_FORTUNES = {"ascii-art"}
_ASCII_FOLD = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2013": "-", "\u2014": "--", "\u2015": "--", "\u2026": "...", "\u00a0": " ", "\u00ad": "", "\u2022": "*",
    "\u00b4": "'", "\u2032": "'", "\u2033": '"', "\u00ab": '"', "\u00bb": '"', "\u2212": "-", "\u00d7": "x",
})
_GCIDE_MARKUP = re.compile(r"\[(?:1913 Webster|PJC|WordNet 1\.5|Webster 1913 Suppl\.|RHRSD|Century Dict\.|"
                           r"MW10|Chambers 1728|[A-Z][A-Za-z ]{0,20}\d{0,4})\]")


def stable_hash(text: str) -> int:
    """A process-independent hash (CRC-32 of the UTF-8 bytes) for the splits; Python's hash() is salted."""
    return zlib.crc32(text.encode("utf-8"))


def is_heldout_paragraph(paragraph: str) -> bool:
    return stable_hash(paragraph) % HELDOUT_MOD == 0


def to_ascii(text: str) -> str | None:
    """`text` folded to printable ASCII with single spaces, or None if characters remain that have no ASCII
    form (accented letters lose their accents: "caf\u00e9" -> "cafe")."""
    text = text.translate(_ASCII_FOLD)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = " ".join(text.split())
    if not text or any(not (32 <= ord(c) < 127) for c in text):
        return None
    return text


def _fortune_paragraphs(root: str) -> Iterator[str]:
    for path in sorted(glob.glob(os.path.join(root, "*"))):
        name = os.path.basename(path)
        if "." in name or name in _SKIP_FORTUNES or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            # Attributions ("-- Mark Twain") stay: bylines are text too. Verse keeps its lines as one paragraph.
            yield from f.read().split("\n%\n")


def _dictd_paragraphs(path: str) -> Iterator[str]:
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        block: list[str] = []
        for line in f:
            if line.strip():
                block.append(line)
                continue
            if block:
                yield from _dictd_block(block)
                block = []
        if block:
            yield from _dictd_block(block)


def _dictd_block(lines: Sequence[str]) -> Iterator[str]:
    text = "".join(lines)
    text = _GCIDE_MARKUP.sub(" ", text)
    # A headword line with pronunciation markup ("Affect \Af*fect"\, v. t. ...") is markup, not prose.
    if "\\" in text.split("\n", 1)[0]:
        return
    if text.lstrip().startswith(("00-database", "00database")):  # the dictionary's own header entries
        return
    yield text.replace("{", "").replace("}", "")


def iter_source_paragraphs(fortunes_dir: str = FORTUNES_DIR, dictd_dir: str = DICTD_DIR) -> Iterator[str]:
    """Raw paragraphs of every installed source (not yet folded or filtered)."""
    for root in (fortunes_dir, dictd_dir):
        if os.path.realpath(root).startswith(FORBIDDEN_ROOT):
            raise ValueError(f"{root} is kept for an outside evaluation and is never read")
    if os.path.isdir(fortunes_dir):
        yield from _fortune_paragraphs(fortunes_dir)
    for name in DICTD_SOURCES:
        path = os.path.join(dictd_dir, f"{name}.dict.dz")
        if os.path.exists(path):
            yield from _dictd_paragraphs(path)


def clean_paragraphs(raw: Iterator[str], min_chars: int = 24) -> list[str]:
    """Folded to ASCII, at least `min_chars` long, mostly letters (not tables or ASCII pictures), unique."""
    seen, out = set(), []
    for paragraph in raw:
        text = to_ascii(paragraph)
        if text is None or len(text) < min_chars:
            continue
        letters = sum(c.isalpha() for c in text)
        if letters < 0.6 * len(text) or text.count("  ") or text in seen:
            continue
        seen.add(text)
        out.append(text)
    return out


@functools.cache
def load_corpus(split: str = "train") -> tuple[str, ...]:
    """The corpus paragraphs of `split` ("train" or "test") from the installed sources; () when none is
    installed."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    held = split == "test"
    return tuple(p for p in clean_paragraphs(iter_source_paragraphs()) if is_heldout_paragraph(p) == held)


class CorpusLines:
    """Text lines cut from running text: a random paragraph, from a random word on, as many words as fit
    `length` characters (continuing into the next paragraph when one ends), as a document line would be."""

    def __init__(self, paragraphs: Sequence[str]):
        if not paragraphs:
            raise ValueError("paragraphs must not be empty")
        self.paragraphs = paragraphs

    def sample(self, rng: random.Random, length: int) -> str:
        index = rng.randrange(len(self.paragraphs))
        words = self.paragraphs[index].split(" ")
        start = rng.randrange(len(words)) if rng.random() < 0.7 else 0
        out, size = [], 0
        while True:
            for word in words[start:]:
                if out and size + 1 + len(word) > length:
                    return " ".join(out)
                out.append(word)
                size += len(word) + (1 if size else 0)
            index = (index + 1) % len(self.paragraphs)
            words, start = self.paragraphs[index].split(" "), 0
            if size >= length or len(out) > 4 * length:
                return " ".join(out)
