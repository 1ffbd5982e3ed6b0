"""Synthetic text images in the MJSynth tradition: sampled text, rendered with system fonts, degraded.

Dimensions: H = 32 (the model's input height), W the width of one image, B batch.

Two disjoint worlds, fixed IN CODE so that no configuration can leak one into the other:
- split="train" renders with every usable font except the held-out families (crnn_fast.data.fonts), samples
  dictionary words whose stable hash is not 0 mod 10 and the corpus paragraphs of the train split
  (crnn_fast.data.corpus);
- split="test" renders ONLY with the held-out font families, ONLY the held-out words and paragraphs.
Numbers, prices, dates and codes are random strings in both; the test set draws them from other seeds.

Everything is deterministic given a seed: the sampler and renderer take a `random.Random`, and the
numpy noise is seeded from it.
"""

from __future__ import annotations

import functools
import io
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..formats.image_batch import HEIGHT, pad_batch
from .charset import Charset
from .corpus import CorpusLines, load_corpus, stable_hash
from .fonts import (  # noqa: F401  (re-exported: the data engine's one namespace)
    FONT_ROOTS,
    HELDOUT_FONT_DIRS,
    STYLES,
    FontInfo,
    discover_fonts,
    fonts_for_split,
)

WORDS_FILE = "/usr/share/dict/words"
# Words with stable_hash(word.lower()) % HELDOUT_WORD_MOD == 0 belong to the test split only.
HELDOUT_WORD_MOD = 10

# A handful of English words for when no dictionary is installed (tests on minimal machines).
_FALLBACK_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there been one all we their has would when if so no will more can about said "
    "time other only new some could these two may first then do any like my now over such our man me even "
    "most made after also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see men work long "
    "get here between both life being under never day same another know while last might us great old year "
    "off come since against go came right used take three himself few house use during without again place "
    "american around however home small found thought went say part once general high upon school every "
    "number text reading window market garden river letter paper orange yellow purple silver golden"
).split()


def is_heldout_word(word: str) -> bool:
    return stable_hash(word.lower()) % HELDOUT_WORD_MOD == 0


@functools.lru_cache(maxsize=4096)
def _load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


# -- words -------------------------------------------------------------------------------------------------


@functools.cache
def load_words(path: str = WORDS_FILE) -> tuple[str, ...]:
    """The dictionary's ASCII words (falls back to a small built-in list when there is no dictionary)."""
    words = []
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="ignore") as f:
            for line in f:
                word = line.strip()
                if word and word.isascii() and word.isprintable() and " " not in word:
                    words.append(word)
    if not words:
        words = list(_FALLBACK_WORDS)
    return tuple(sorted(set(words)))


def words_for_split(split: str, words: Sequence[str] | None = None) -> tuple[str, ...]:
    _check_split(split)
    words = load_words() if words is None else words
    held = split == "test"
    return tuple(w for w in words if is_heldout_word(w) == held)


def _check_split(split) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


# -- text sampling -----------------------------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS_LONG = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                "October", "November", "December")
_CURRENCY = ("$", "USD ", "EUR ", "GBP ", "CHF ", "")
_TLDS = ("com", "org", "net", "io", "de", "fr", "co.uk", "edu")
_PUNCT_BEFORE = ('"', "'", "(", "[", "#", "*", "<", "{", "`")
_PUNCT_AFTER = (".", ",", ";", ":", "!", "?", ")", '"', "'", "]", "...", "%", ">", "}", "*")
_ASCII_SYMBOLS = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = _UPPER.lower()
_DIGITS = "0123456789"

# Kinds of text and their default weights in training. "sentence": a line cut from real running text
# (crnn_fast.data.corpus); "line": dictionary words mixed with numbers, prices, dates and codes.
TEXT_KINDS = ("word", "number", "price", "date", "code", "random", "line", "sentence")
DEFAULT_MIX = {"word": 0.25, "number": 0.05, "price": 0.04, "date": 0.04, "code": 0.08, "random": 0.04,
               "line": 0.15, "sentence": 0.35}
# How often each style of font is drawn (then a family within the style, then one of its faces): text faces
# first, without letting the many pixel and display fonts crowd them out.
STYLE_WEIGHTS = {"serif": 0.3, "sans": 0.3, "mono": 0.12, "script": 0.1, "display": 0.08, "condensed": 0.1}


class TextSampler:
    """Random texts of the printable ASCII kind: words, numbers, prices, dates, codes, symbol strings, lines.

    split: "train" or "test" (picks the dictionary words and corpus paragraphs, see the module docstring).
    max_line_chars: text lines are cut to at most this many characters (at a word boundary); half of them
        are at least half that long.
    paragraphs: the running text "sentence" lines are cut from (default: the installed corpus's paragraphs
        of `split`).
    """

    def __init__(self, split: str = "train", *, words: Sequence[str] | None = None, max_line_chars: int = 48,
                 mix: dict[str, float] | None = None, paragraphs: Sequence[str] | None = None):
        self.split = split
        self.words = words_for_split(split, words)
        if not self.words:
            raise ValueError(f"no dictionary words for split {split!r}")
        self.max_line_chars = max_line_chars
        mix = dict(DEFAULT_MIX if mix is None else mix)
        unknown = set(mix) - set(TEXT_KINDS)
        if unknown:
            raise ValueError(f"mix has unknown kinds {sorted(unknown)}; kinds are {TEXT_KINDS}")
        self.kinds = tuple(k for k in TEXT_KINDS if mix.get(k, 0) > 0)
        self.weights = tuple(mix[k] for k in self.kinds)
        self.corpus = None
        if "sentence" in self.kinds:
            paragraphs = load_corpus(split) if paragraphs is None else paragraphs
            if not paragraphs:
                raise ValueError("mix asks for 'sentence' lines but no text corpus is installed: run "
                                 "scripts/install_training_data.sh (Debian fortunes, dict-gcide, ...) or leave "
                                 "'sentence' out of mix")
            self.corpus = CorpusLines(paragraphs)

    def sample(self, rng: random.Random, kind: str | None = None) -> str:
        kind = rng.choices(self.kinds, self.weights)[0] if kind is None else kind
        text = getattr(self, f"_{kind}")(rng)
        return " ".join(text.split())  # no leading/trailing or repeated spaces

    # -- kinds --
    def _plain_word(self, rng: random.Random) -> str:
        word = rng.choice(self.words)
        r = rng.random()
        if r < 0.45:
            return word.lower()
        if r < 0.70:
            return word[:1].upper() + word[1:].lower()
        if r < 0.85:
            return word.upper()
        return word

    def _word(self, rng: random.Random) -> str:
        word = self._plain_word(rng)
        r = rng.random()
        if r < 0.06:
            word = f"{word}-{self._plain_word(rng)}"
        if rng.random() < 0.10:
            word = rng.choice(_PUNCT_BEFORE) + word
        if rng.random() < 0.22:
            word = word + rng.choice(_PUNCT_AFTER)
        return word

    def _number(self, rng: random.Random) -> str:
        r = rng.random()
        if r < 0.3:
            return str(rng.randint(0, 10 ** rng.randint(1, 7)))
        if r < 0.5:
            return f"{rng.randint(1000, 9_999_999):,}"
        if r < 0.65:
            return f"{rng.uniform(-1000, 1000):.{rng.randint(1, 3)}f}"
        if r < 0.75:
            return f"{rng.randint(0, 100)}{rng.choice(['%', ' %', '.5%', 'x', 'kg', 'km', 'mm', ' cm', 'ml'])}"
        if r < 0.87:
            return f"({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
        if r < 0.93:
            return f"+{rng.randint(1, 99)} {rng.randint(10, 999)} {rng.randint(1000, 9999999)}"
        return f"No. {rng.randint(1, 999)}" if rng.random() < 0.5 else f"#{rng.randint(1, 99999)}"

    def _price(self, rng: random.Random) -> str:
        amount = rng.choice([rng.randint(0, 99), rng.randint(0, 9999), rng.randint(0, 999999)])
        cents = rng.randint(0, 99)
        body = f"{amount:,}.{cents:02d}" if rng.random() < 0.6 else f"{amount}.{cents:02d}"
        if rng.random() < 0.15:
            body = f"{amount},{cents:02d}"
        r = rng.random()
        if r < 0.6:
            return rng.choice(_CURRENCY) + body
        if r < 0.8:
            return f"{body} {rng.choice(['USD', 'EUR', 'GBP', 'JPY'])}"
        return f"{rng.choice(['Total:', 'Price', 'Sale', 'Now', 'Only', 'Tax'])} ${body}"

    def _date(self, rng: random.Random) -> str:
        y, m, d = rng.randint(1950, 2039), rng.randint(1, 12), rng.randint(1, 28)
        hh, mm = rng.randint(0, 23), rng.randint(0, 59)
        forms = (f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{m}/{d}/{y % 100:02d}", f"{d}.{m}.{y}",
                 f"{_MONTHS[m - 1]} {d}, {y}", f"{d} {_MONTHS_LONG[m - 1]} {y}", f"{hh:02d}:{mm:02d}",
                 f"{(hh % 12) or 12}:{mm:02d} {'AM' if hh < 12 else 'PM'}", f"{y}-{m:02d}-{d:02d} {hh:02d}:{mm:02d}",
                 f"{_MONTHS[m - 1].upper()} {d:02d}", f"Q{rng.randint(1, 4)} {y}", f"'{y % 100:02d}")
        return rng.choice(forms)

    def _code(self, rng: random.Random) -> str:
        def chars(alphabet, lo, hi):
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))

        r = rng.random()
        if r < 0.25:
            return f"{chars(_UPPER, 1, 4)}{rng.choice(['-', '', ' ', '/', '.'])}{chars(_DIGITS, 2, 6)}"
        if r < 0.40:
            return "-".join(chars(_UPPER + _DIGITS, 3, 5) for _ in range(rng.randint(2, 4)))
        if r < 0.50:
            prefix = rng.choice(['SKU', 'INV', 'REF', 'ID', 'PO', 'Lot', 'Ser.'])
            sep = rng.choice([' ', ':', '#', '/'])
            return f"{prefix}{sep}{chars(_DIGITS + _UPPER, 4, 9)}"
        if r < 0.60:
            name = self._plain_word(rng).lower()
            sep = rng.choice(['.', '_', ''])
            user = chars(_LOWER + _DIGITS, 0, 5)
            return f"{name}{sep}{user}@{chars(_LOWER, 3, 8)}.{rng.choice(_TLDS)}"
        if r < 0.70:
            path = "/".join(chars(_LOWER, 2, 7) for _ in range(rng.randint(0, 2)))
            scheme = rng.choice(['www.', 'http://', 'https://', ''])
            host = chars(_LOWER, 3, 9)
            return f"{scheme}{host}.{rng.choice(_TLDS)}{'/' + path if path else ''}"
        if r < 0.78:
            return f"0x{chars('0123456789ABCDEF' if rng.random() < 0.5 else '0123456789abcdef', 2, 8)}"
        if r < 0.86:
            return chars(_UPPER + _DIGITS, 4, 12)
        if r < 0.93:
            return f"{chars(_UPPER, 2, 3)}{rng.randint(1, 999)}{chars(_LOWER, 0, 2)}"
        return f"v{rng.randint(0, 20)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}"

    def _random(self, rng: random.Random) -> str:
        pools = (_UPPER, _LOWER, _DIGITS, _ASCII_SYMBOLS)
        weights = (0.25, 0.3, 0.2, 0.25)
        n = rng.randint(1, 12)
        text = "".join(rng.choice(rng.choices(pools, weights)[0]) for _ in range(n))
        if n > 3 and rng.random() < 0.3:
            i = rng.randint(1, n - 2)
            text = text[:i] + " " + text[i + 1:]
        return text

    def _line_length(self, rng: random.Random) -> int:
        top = max(8, self.max_line_chars)
        return rng.randint(8, top) if rng.random() < 0.5 else rng.randint(max(8, top // 2), top)

    def _sentence(self, rng: random.Random) -> str:
        line = self.corpus.sample(rng, self._line_length(rng))[: self.max_line_chars]
        r = rng.random()
        if r < 0.04:
            return line.upper()
        if r < 0.07:
            return " ".join(w[:1].upper() + w[1:] for w in line.split(" "))
        if r < 0.15:  # a number, price, date or code in the middle of prose
            words = line.split(" ")
            token = getattr(self, rng.choice(("_number", "_price", "_date", "_code")))(rng)
            words.insert(rng.randrange(len(words) + 1), token)
            while len(words) > 1 and len(" ".join(words)) > self.max_line_chars:
                words.pop()
            return " ".join(words)[: self.max_line_chars]
        return line

    def _line(self, rng: random.Random) -> str:
        target = self._line_length(rng)
        tokens, length = [], 0
        while length < target or len(tokens) < 2:
            r = rng.random()
            if r < 0.72:
                token = self._word(rng) if rng.random() < 0.6 else self._plain_word(rng)
            elif r < 0.80:
                token = self._number(rng)
            elif r < 0.86:
                token = self._price(rng)
            elif r < 0.92:
                token = self._date(rng)
            elif r < 0.97:
                token = self._code(rng)
            else:
                token = rng.choice(["-", "&", "|", "/", "+", "=", "*", "--"])
            if tokens and length + 1 + len(token) > self.max_line_chars:
                break
            tokens.append(token)
            length += len(token) + (1 if length else 0)
        return " ".join(tokens)[: self.max_line_chars]


# -- rendering ---------------------------------------------------------------------------------------------

AUGMENTATIONS = ("background", "low_contrast", "invert", "blur", "noise", "jpeg", "low_res", "rotate",
                 "perspective", "underline", "strikethrough", "letter_spacing", "stroke", "tight_crop",
                 # typesetting
                 "word_spacing",
                 # crop geometry
                 "loose_crop", "neighbour_lines",
                 # scan-like
                 "uneven_light", "ink_bleed", "erosion", "binarize", "speckle",
                 # camera-like
                 "curve", "motion_blur", "shadow")


@dataclass
class RenderConfig:
    """How strongly a sample is degraded.

    degraded_prob: probability that a sample is rendered "degraded" (every augmentation likelier and
        stronger); the others get only mild variation (font, size, colour, spacing, margins, tiny rotation).
    force: augmentations applied to every sample (for tests and for building degraded test sets).
    max_width: samples wider than this after the height is set to 32 are squeezed to it.
    """

    degraded_prob: float = 0.5
    force: tuple[str, ...] = ()
    max_width: int = 800
    min_font_px: int = 16
    max_font_px: int = 48

    def __post_init__(self):
        unknown = set(self.force) - set(AUGMENTATIONS)
        if unknown:
            raise ValueError(f"force has unknown augmentations {sorted(unknown)}; known: {AUGMENTATIONS}")
        if not 0.0 <= self.degraded_prob <= 1.0:
            raise ValueError(f"degraded_prob must be in [0, 1], got {self.degraded_prob}")


def _luma(color) -> float:
    if isinstance(color, int):
        return float(color)
    r, g, b = color
    return 0.299 * r + 0.587 * g + 0.114 * b


def _random_color(rng: random.Random, colored: bool, lo: int = 0, hi: int = 255):
    if colored:
        return tuple(rng.randint(lo, hi) for _ in range(3))
    return rng.randint(lo, hi)


def _pick_colors(rng: random.Random, colored: bool, min_contrast: float):
    """(foreground, background) with |luma difference| >= min_contrast; dark on light 75% of the time."""
    for _ in range(50):
        bg = _random_color(rng, colored)
        fg = _random_color(rng, colored)
        if abs(_luma(bg) - _luma(fg)) >= min_contrast:
            return fg, bg
    return ((0, 0, 0), (255, 255, 255)) if colored else (0, 255)


def _smooth_field(nprng: np.random.Generator, h: int, w: int, cells: tuple[int, int]) -> np.ndarray:
    """A smooth random field in [-0.5, 0.5] of shape (h, w): noise on a coarse grid, upsampled bicubically."""
    small = nprng.normal(0, 1, (max(2, cells[0]), max(2, cells[1])))
    small = (small - small.min()) / max(float(np.ptp(small)), 1e-6) * 255
    field = np.asarray(Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32)
    return field / 255.0 - 0.5


def _background(rng: random.Random, nprng: np.random.Generator, size: tuple[int, int], bg, colored: bool,
                textured: bool) -> Image.Image:
    w, h = size
    mode = "RGB" if colored else "L"
    base = np.empty((h, w, 3) if colored else (h, w), dtype=np.float32)
    base[...] = np.asarray(bg, dtype=np.float32)
    if textured:
        kind = rng.random()
        amp = rng.uniform(10, 45)
        if kind < 0.35:  # linear gradient
            angle = rng.uniform(0, 2 * math.pi)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            ramp = (xx * math.cos(angle) + yy * math.sin(angle))
            ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0) - 0.5
            base += (ramp * 2 * amp)[..., None] if colored else ramp * 2 * amp
        elif kind < 0.75:  # smooth noise texture (paper, cardboard)
            tex = _smooth_field(nprng, h, w, (h // rng.randint(2, 8), w // rng.randint(2, 8)))
            base += (tex * 2 * amp)[..., None] if colored else tex * 2 * amp
        else:  # speckle and fibres
            base += nprng.normal(0, amp / 3, base.shape[:2])[..., None] if colored else \
                nprng.normal(0, amp / 3, base.shape)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), mode)
    if textured and rng.random() < 0.3:  # a few stray lines / blots in the background
        draw = ImageDraw.Draw(img)
        for _ in range(rng.randint(1, 4)):
            col = _random_color(rng, colored)
            x0, y0 = rng.randint(0, w), rng.randint(0, h)
            draw.line((x0, y0, x0 + rng.randint(-w, w), y0 + rng.randint(-h // 2, h // 2)), fill=col,
                      width=rng.randint(1, 2))
    return img


def _perspective_coeffs(src, dst):
    """Coefficients for Image.transform(PERSPECTIVE) mapping output points dst to input points src."""
    matrix = []
    for (x, y), (u, v) in zip(dst, src):
        matrix.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        matrix.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(matrix, dtype=np.float64)
    b = np.array([c for p in src for c in p], dtype=np.float64)
    return np.linalg.solve(a, b).tolist()


def _layout(text: str, pil_font: ImageFont.FreeTypeFont, letter_spacing: float, space_factor: float,
            features) -> tuple[list[tuple[str, float]], int]:
    """Where each piece of `text` is drawn: [(piece, x)], and the width of the whole.

    Without letter spacing the pieces are words (kerning inside a word is the font's), with it single
    characters; a space advances space_factor times the font's own space (tight or loose word spacing, as
    justified and hand-set lines have)."""
    space = pil_font.getlength(" ", features=features) * space_factor
    pieces, x = [], 0.0
    units = list(text) if letter_spacing else text.split(" ")
    for i, unit in enumerate(units):
        if letter_spacing:
            if unit == " ":
                x += space + letter_spacing
                continue
            pieces.append((unit, x))
            x += pil_font.getlength(unit, features=features) + letter_spacing
        else:
            if i:
                x += space
            pieces.append((unit, x))
            x += pil_font.getlength(unit, features=features)
    if letter_spacing:
        x -= letter_spacing
    last, last_x = pieces[-1]
    right = last_x + max(pil_font.getbbox(last, features=features)[2], pil_font.getlength(last, features=features))
    return pieces, int(math.ceil(max(x, right)))


def _curve(arr: np.ndarray, rng: random.Random, fill: float) -> np.ndarray:
    """Bend the text's baseline: every column shifted up or down along a sine of random period and phase."""
    h, w = arr.shape
    amp = rng.uniform(0.04, 0.12) * h
    period = rng.uniform(1.0, 3.0) * max(w, h)
    phase = rng.uniform(0, 2 * math.pi)
    shift = np.round(amp * np.sin(2 * math.pi * np.arange(w) / period + phase)).astype(np.int64)
    pad = int(math.ceil(amp)) + 1
    padded = np.full((h + 2 * pad, w), fill, dtype=arr.dtype)
    padded[pad:pad + h] = arr
    rows = (np.arange(h)[:, None] + pad - shift[None, :])
    return padded[rows, np.arange(w)[None, :]]


def _motion_blur(arr: np.ndarray, rng: random.Random, scale: float) -> np.ndarray:
    """The mean of k copies shifted along one direction: a camera moved while the shutter was open."""
    k = max(2, int(round(rng.uniform(2, 6) * scale)))
    angle = rng.choice([0.0, 0.0, rng.uniform(-math.pi / 4, math.pi / 4), math.pi / 2])
    out = np.zeros_like(arr)
    for i in range(k):
        t = i - (k - 1) / 2
        out += np.roll(arr, (int(round(t * math.sin(angle))), int(round(t * math.cos(angle)))), axis=(0, 1))
    return out / k


def _scan_and_camera(arr: np.ndarray, rng: random.Random, nprng: np.random.Generator, want, degraded: bool,
                     dark_text: bool, scale: float, stroke_px: float) -> np.ndarray:
    """Scan-like and camera-like damage of a grayscale float image (h, w) at its rendered resolution."""
    h, w = arr.shape
    paper = float(np.percentile(arr, 90 if dark_text else 10))
    if want("curve", 0.03, 0.15):
        arr = _curve(arr, rng, paper)
    # Ink grows (bleed) or thins (erosion): a min/max filter on the ink's side, where strokes are thick
    # enough to survive it.
    if stroke_px >= 2.5:
        grow, shrink = (ImageFilter.MinFilter, ImageFilter.MaxFilter) if dark_text else \
            (ImageFilter.MaxFilter, ImageFilter.MinFilter)
        img = None
        if want("ink_bleed", 0.03, 0.15):
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(grow(3))
        elif stroke_px >= 4 and want("erosion", 0.02, 0.12):
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(shrink(3))
        if img is not None:
            arr = np.asarray(img, np.float32)
    if want("uneven_light", 0.05, 0.3):
        field = _smooth_field(nprng, h, w, (rng.randint(1, 3), rng.randint(2, 6)))
        arr = arr * (1.0 + rng.uniform(0.2, 0.6 if degraded else 0.3) * field)
    if want("shadow", 0.02, 0.15):
        # A soft-edged half-plane darkened: the shadow of a hand or a phone over the page.
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, 2 * math.pi)
        d = (xx - rng.uniform(0, w)) * math.cos(angle) + (yy - rng.uniform(0, h)) * math.sin(angle)
        edge = 1.0 / (1.0 + np.exp(np.clip(-d / max(1.0, rng.uniform(1, 8) * scale), -60.0, 60.0)))
        arr = arr * (1.0 - rng.uniform(0.25, 0.55) * edge)
    if want("speckle", 0.02, 0.2):
        count = int(h * w * rng.uniform(0.0005, 0.004))
        ys, xs = nprng.integers(0, h, count), nprng.integers(0, w, count)
        ink = float(np.percentile(arr, 3 if dark_text else 97))
        arr[ys, xs] = ink
        if scale > 1.2:  # dots of more than one pixel at larger renderings
            arr[np.minimum(ys + 1, h - 1), xs] = ink
            arr[ys, np.minimum(xs + 1, w - 1)] = ink
    if want("binarize", 0.03, 0.15):
        lo, hi = np.percentile(arr, 5), np.percentile(arr, 95)
        threshold = lo + (hi - lo) * rng.uniform(0.3, 0.7)
        arr = np.where(arr > threshold, 255.0, 0.0).astype(np.float32)
    if want("motion_blur", 0.02, 0.15):
        arr = _motion_blur(arr, rng, scale)
    return arr


def render_text(text: str, font: FontInfo | str, rng: random.Random, config: RenderConfig | None = None,
                *, degraded: bool | None = None, native: bool = False) -> tuple[np.ndarray, str]:
    """Render `text` with `font` and degrade it: returns (image (32, W) uint8 grayscale, label).

    The label is `text`, upper-cased for caps-only fonts. `degraded` overrides config.degraded_prob.
    native: keep the rendered resolution (height = the font's line height plus margins, about 12-150 px)
    instead of resizing to 32 high: how test images are stored, so every recogniser resizes them its own way.
    """
    config = config or RenderConfig()
    if isinstance(font, str):
        font = FontInfo(font, os.path.basename(os.path.dirname(font)), False)
    if font.caps_only:
        text = text.upper()
    features = ["-liga", "-clig", "-dlig", "-rlig"] if font.no_ligatures else None
    nprng = np.random.default_rng(rng.getrandbits(63))
    if degraded is None:
        degraded = rng.random() < config.degraded_prob
    force = set(config.force)

    def want(name: str, p_clean: float, p_degraded: float) -> bool:
        return name in force or rng.random() < (p_degraded if degraded else p_clean)

    size = rng.randint(config.min_font_px, config.max_font_px)
    low_res = want("low_res", 0.0, 0.25)
    if low_res:
        size = rng.randint(9, 14)
    pil_font = _load_font(font.path, size)
    colored = rng.random() < 0.5
    min_contrast = rng.uniform(25, 70) if want("low_contrast", 0.0, 0.3) else rng.uniform(90, 200)
    fg, bg = _pick_colors(rng, colored, min_contrast)
    if want("invert", 0.05, 0.15) and _luma(fg) < _luma(bg):
        fg, bg = bg, fg
    elif _luma(fg) > _luma(bg) and "invert" not in force and rng.random() < 0.6:
        fg, bg = bg, fg  # keep dark-on-light the most common polarity

    ascent, descent = pil_font.getmetrics()
    line_h = ascent + descent
    letter_spacing = 0.0
    if want("letter_spacing", 0.08, 0.12):
        # Mostly loose tracking; sometimes tight, as in squeezed headlines.
        letter_spacing = rng.uniform(0.05, 0.35) * size if rng.random() < 0.75 else -rng.uniform(0.02, 0.05) * size
    space_factor = 1.0
    if " " in text and want("word_spacing", 0.5, 0.5):
        r = rng.random()
        space_factor = rng.uniform(0.3, 0.7) if r < 0.4 else rng.uniform(0.7, 1.3) if r < 0.75 else \
            rng.uniform(1.3, 2.6)
    pieces, text_w = _layout(text, pil_font, letter_spacing, space_factor, features)
    text_w = max(text_w, 1)

    tight = want("tight_crop", 0.1, 0.15)
    pad_l = 0 if tight else int(rng.uniform(0.0, 0.6) * size)
    pad_r = 0 if tight else int(rng.uniform(0.0, 0.6) * size)
    if tight:
        pad_t = pad_b = 0
    elif want("loose_crop", 0.2, 0.3):  # margins up to the text's own height above and below
        pad_t, pad_b = int(rng.uniform(0.2, 1.0) * line_h), int(rng.uniform(0.2, 1.0) * line_h)
    else:
        pad_t, pad_b = int(rng.uniform(0.0, 0.35) * size), int(rng.uniform(0.0, 0.35) * size)
    W, H = text_w + pad_l + pad_r + 2, line_h + pad_t + pad_b + 2
    textured = want("background", 0.25, 0.7)
    img = _background(rng, nprng, (W, H), bg, colored, textured)
    draw = ImageDraw.Draw(img)
    stroke = 1 if (want("stroke", 0.03, 0.08) and size >= 18) else 0
    x0, y0 = pad_l + 1, pad_t + 1
    left = min(pil_font.getbbox(pieces[0][0], features=features)[0], 0)
    for piece, x in pieces:
        draw.text((x0 - left + x, y0), piece, font=pil_font, fill=fg, stroke_width=stroke, stroke_fill=fg,
                  features=features)
    if want("neighbour_lines", 0.08, 0.2):
        # The lines above and below, cut by the crop: at most their bottom or top 40% shows.
        words = text.split(" ")
        for above in (True, False):
            if rng.random() < 0.6:
                rng.shuffle(words)
                other = " ".join(words)
                visible = rng.uniform(0.1, 0.4) * line_h
                gap = rng.uniform(0.05, 0.3) * line_h
                y = min(y0 - line_h - gap, visible - line_h) if above else max(y0 + line_h + gap, H - visible)
                draw.text((x0 + rng.uniform(-0.5, 0.5) * size, y), other, font=pil_font, fill=fg, features=features)
    thickness = max(1, round(size / 14))
    if want("underline", 0.02, 0.08):
        y = y0 + ascent + max(1, descent // 3)
        draw.line((x0, y, x0 + text_w, y), fill=fg, width=thickness)
    if want("strikethrough", 0.01, 0.06):
        y = y0 + int(ascent * rng.uniform(0.55, 0.75))
        draw.line((x0, y, x0 + text_w, y), fill=fg, width=thickness)

    # Geometry: rotation (skew of the page), then shear / perspective in one transform.
    max_angle = 4.0 if degraded else 1.0
    if "rotate" in force:
        max_angle = max(max_angle, 4.0)
    if want("rotate", 0.3, 0.7):
        angle = rng.uniform(-max_angle, max_angle)
        fill = bg if not colored else tuple(bg)
        img = img.rotate(angle, resample=Image.BILINEAR, expand=True, fillcolor=fill)
    if want("perspective", 0.1, 0.5):
        w, h = img.size
        shear = rng.uniform(-0.35, 0.35) * h
        jitter = 0.06 * h if degraded else 0.03 * h
        src = [(0, 0), (w, 0), (w, h), (0, h)]
        dst = [(max(0.0, shear) + rng.uniform(-jitter, jitter), rng.uniform(-jitter, jitter)),
               (w + max(0.0, shear) + rng.uniform(-jitter, jitter), rng.uniform(-jitter, jitter)),
               (w + max(0.0, -shear) + rng.uniform(-jitter, jitter), h + rng.uniform(-jitter, jitter)),
               (max(0.0, -shear) + rng.uniform(-jitter, jitter), h + rng.uniform(-jitter, jitter))]
        out_w = int(w + abs(shear) + 2 * jitter)
        coeffs = _perspective_coeffs(src, dst)
        fill = bg if not colored else tuple(bg)
        img = img.transform((out_w, h), Image.PERSPECTIVE, coeffs, Image.BILINEAR, fillcolor=fill)

    img = img.convert("L")
    dark_text = _luma(fg) < _luma(bg)
    stroke_px = size / 12 + stroke
    arr = _scan_and_camera(np.asarray(img, np.float32), rng, nprng, want, degraded, dark_text, img.size[1] / HEIGHT,
                           stroke_px)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    w, h = img.size
    # low_res samples were rendered with a 9-14 px font: the resize below upsamples them (soft strokes).
    scale = 1.0
    resample = Image.BILINEAR if rng.random() < 0.7 else Image.BICUBIC
    if native:
        scale = h / HEIGHT  # keep the rendered resolution; scale blur to it
    else:
        img = img.resize((max(1, round(w * HEIGHT / h)), HEIGHT), resample)
    if want("blur", 0.05, 0.4):
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.4 if degraded else 0.8) * scale))
    arr = np.asarray(img, dtype=np.float32)
    if want("noise", 0.1, 0.5):
        arr = arr + nprng.normal(0, rng.uniform(3, 18 if degraded else 6), arr.shape)
        if degraded and rng.random() < 0.2:  # salt and pepper
            mask = nprng.random(arr.shape)
            p = rng.uniform(0.005, 0.03)
            arr[mask < p / 2] = 0
            arr[mask > 1 - p / 2] = 255
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    if want("jpeg", 0.05, 0.35):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=rng.randint(8, 40 if degraded else 70))
        buf.seek(0)
        arr = np.asarray(Image.open(buf).convert("L"))
    if not native and arr.shape[1] > config.max_width:
        arr = np.asarray(Image.fromarray(arr).resize((config.max_width, HEIGHT), Image.BILINEAR))
    return np.ascontiguousarray(arr), text


# -- the generator and the dataset ------------------------------------------------------------------------


def min_frames(text: str) -> int:
    """Frames CTC needs for `text`: one per character plus one blank between repeated characters."""
    return len(text) + sum(1 for a, b in zip(text, text[1:]) if a == b)


def ensure_ctc_width(image: np.ndarray, text: str, frames_per_pixel: float = 0.25) -> np.ndarray:
    """Stretch `image` horizontally if it is too narrow for CTC to emit `text` (T = W // 4 + 1 frames)."""
    need = int(math.ceil((min_frames(text) + 1) / frames_per_pixel))
    if image.shape[1] >= need:
        return image
    return np.asarray(Image.fromarray(image).resize((need, image.shape[0]), Image.BILINEAR))


class SynthGenerator:
    """Text sampler + renderer for one split: generator.sample(rng) -> (image (32, W) uint8, label)."""

    def __init__(self, split: str = "train", *, charset: Charset | None = None, mix: dict | None = None,
                 render: RenderConfig | None = None, fonts: Sequence[FontInfo] | None = None,
                 words: Sequence[str] | None = None, max_line_chars: int = 48,
                 paragraphs: Sequence[str] | None = None):
        _check_split(split)
        self.split = split
        self.charset = charset or Charset.printable_ascii()
        self.sampler = TextSampler(split, words=words, mix=mix, max_line_chars=max_line_chars, paragraphs=paragraphs)
        self.render_config = render or RenderConfig()
        self.fonts = fonts_for_split(split, fonts)
        if not self.fonts:
            raise RuntimeError(f"no usable fonts for split {split!r} under {', '.join(FONT_ROOTS)} "
                               f"(held-out families: {sorted(HELDOUT_FONT_DIRS)}); install e.g. the Debian "
                               "packages fonts-dejavu-core (train) and fonts-karla, fonts-sil-charis (test)")
        # style -> family -> faces; FontInfo built by hand (tests) may lack a style or family.
        self._by_style: dict[str, dict[str, list[FontInfo]]] = {}
        for f in self.fonts:
            family = f.family or f.family_dir
            self._by_style.setdefault(f.style or "sans", {}).setdefault(family, []).append(f)
        self._styles = sorted(self._by_style)
        self._style_weights = [STYLE_WEIGHTS.get(st, 0.1) for st in self._styles]

    def pick_font(self, rng: random.Random) -> FontInfo:
        """A style (by STYLE_WEIGHTS), a family of it, one of its faces: no style or family dominates."""
        families = self._by_style[rng.choices(self._styles, self._style_weights)[0]]
        return rng.choice(families[rng.choice(sorted(families))])

    def sample(self, rng: random.Random, kind: str | None = None, degraded: bool | None = None
               ) -> tuple[np.ndarray, str]:
        for _ in range(20):
            text = self.sampler.sample(rng, kind)
            text = "".join(c for c in text if c in self.charset).strip()
            if text:
                break
        else:
            text = "a" if "a" in self.charset else self.charset.characters[0]
        font = self.pick_font(rng)
        image, label = render_text(text, font, rng, self.render_config, degraded=degraded)
        return ensure_ctc_width(image, label), label


class SynthDataset(torch.utils.data.IterableDataset):
    """An endless stream of padded batches of synthetic samples (use DataLoader(batch_size=None)).

    Each batch is drawn from a pool of `pool_batches` batches' worth of samples sorted by width, so that
    samples of similar width share a batch and padding stays small. Each worker seeds its own stream
    from (seed, worker id, start_batch): deterministic for a given number of workers.

    curriculum_batches: for the first batches, degraded_prob ramps up linearly from 0 (clean first).
    rank, world_size: in data-parallel training each of the world_size processes draws its own stream of
        batch_size samples per batch (rank 0's is the single-process stream), and all processes take the
        batches of a pool in the same width order, so that the shards of one global batch have similar
        widths and padding them to the global batch's widest stays cheap.
    """

    def __init__(self, batch_size: int = 64, *, seed: int = 0, split: str = "train", charset: Charset | None = None,
                 mix: dict | None = None, render: RenderConfig | None = None, pool_batches: int = 8,
                 curriculum_batches: int = 0, start_batch: int = 0, max_line_chars: int = 48, rank: int = 0,
                 world_size: int = 1):
        super().__init__()
        if not (isinstance(world_size, int) and world_size >= 1):
            raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
        if not (isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"rank must be an int in [0, world_size={world_size}), got {rank!r}")
        self.batch_size = batch_size
        self.seed = seed
        self.split = split
        self.charset = charset or Charset.printable_ascii()
        self.mix = mix
        self.render = render or RenderConfig()
        self.pool_batches = pool_batches
        self.curriculum_batches = curriculum_batches
        self.start_batch = start_batch
        self.max_line_chars = max_line_chars
        self.rank = rank
        self.world_size = world_size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        gen = SynthGenerator(self.split, charset=self.charset, mix=self.mix, render=RenderConfig(**vars(self.render)),
                             max_line_chars=self.max_line_chars)
        # Batches are numbered globally: worker k makes batches k, k + workers, ... (DataLoader's order).
        pool_index = self.start_batch // (workers * self.pool_batches)
        target_prob = self.render.degraded_prob
        # Resuming mid-pool: skip the batches of the first pool already consumed (exact for one worker).
        skip = (self.start_batch // workers) % self.pool_batches
        while True:
            batch_no = (pool_index * workers + worker) * self.pool_batches
            stream = f"{self.seed}/{self.split}/{worker}/{pool_index}"
            rng = random.Random(stream if self.rank == 0 else f"{stream}/rank{self.rank}")
            # One process shuffles with its sample stream (as it always has); several share one order.
            order_rng = rng if self.world_size == 1 else random.Random(f"{stream}/order")
            if self.curriculum_batches > 0:
                gen.render_config.degraded_prob = target_prob * min(1.0, batch_no / self.curriculum_batches)
            samples = [gen.sample(rng) for _ in range(self.batch_size * self.pool_batches)]
            samples.sort(key=lambda s: s[0].shape[1])
            batches = [samples[i: i + self.batch_size] for i in range(0, len(samples), self.batch_size)]
            order_rng.shuffle(batches)
            for chunk in batches[skip:]:
                yield pad_batch([s[0] for s in chunk], [s[1] for s in chunk])
            skip = 0
            pool_index += 1


# -- the held-out test set ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeldoutSubset:
    """One subset of the held-out test: text kinds (cycled), degradation (True / False / None = 50:50),
    the longest line, and a pool of augmentations of which `forced` are forced on every image."""

    kinds: tuple[str, ...]
    degraded: bool | None
    max_line_chars: int = 44
    pool: tuple[str, ...] = ()
    forced: int = 0


SCAN_AUGMENTATIONS = ("uneven_light", "ink_bleed", "erosion", "binarize", "speckle", "low_res", "rotate",
                      "background", "noise", "loose_crop", "neighbour_lines")
CAMERA_AUGMENTATIONS = ("perspective", "curve", "motion_blur", "shadow", "jpeg", "noise", "blur", "rotate",
                        "low_contrast", "background")

# Rendered with split="test": held-out fonts, words and corpus paragraphs only. The first four are the
# held-out set of benchmarks/heldout (v1); HELDOUT_V2 those of benchmarks/heldout_v2, rendered from the fonts
# of scripts/install_training_data.sh.
HELDOUT_SUBSETS = {
    "clean_words": HeldoutSubset(("word",), False),
    "degraded_words": HeldoutSubset(("word",), True),
    "codes_numbers": HeldoutSubset(("number", "price", "date", "code"), None),
    "lines": HeldoutSubset(("line",), None),
    "sentences": HeldoutSubset(("sentence",), False, max_line_chars=100),
    "scan_lines": HeldoutSubset(("sentence", "line"), False, max_line_chars=100, pool=SCAN_AUGMENTATIONS, forced=3),
    "camera_crops": HeldoutSubset(("word", "code", "price", "line"), False, max_line_chars=32,
                                  pool=CAMERA_AUGMENTATIONS, forced=3),
}
HELDOUT_V1 = ("clean_words", "degraded_words", "codes_numbers", "lines")
HELDOUT_V2 = ("clean_words", "degraded_words", "codes_numbers", "sentences", "scan_lines", "camera_crops")


def render_heldout(subset: str, n: int, *, seed: int = 2024, max_line_chars: int | None = None,
                   native: bool = True) -> list[tuple[np.ndarray, str]]:
    """n test-split samples of a HELDOUT_SUBSETS subset: held-out fonts, words and paragraphs only, the
    training augmentations (and the subset's forced ones), stored at their rendered resolution (native=True).
    Deterministic in (subset, n, seed) for a given set of installed fonts."""
    if subset not in HELDOUT_SUBSETS:
        raise ValueError(f"subset must be one of {list(HELDOUT_SUBSETS)}, got {subset!r}")
    spec = HELDOUT_SUBSETS[subset]
    gen = SynthGenerator("test", max_line_chars=max_line_chars or spec.max_line_chars,
                         mix={kind: 1.0 for kind in spec.kinds})
    rng = random.Random(f"heldout/{subset}/{seed}")
    out = []
    for i in range(n):
        kind = spec.kinds[i % len(spec.kinds)]
        text = gen.sampler.sample(rng, kind)
        text = "".join(c for c in text if c in gen.charset).strip() or "a"
        font = gen.pick_font(rng)
        deg = (rng.random() < 0.5) if spec.degraded is None else spec.degraded
        config = gen.render_config
        if spec.forced:
            config = RenderConfig(force=tuple(rng.sample(spec.pool, spec.forced)), max_width=config.max_width)
        out.append(render_text(text, font, rng, config, degraded=deg, native=native))
    return out
