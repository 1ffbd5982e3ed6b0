"""Synthetic text images in the MJSynth tradition: sampled text, rendered with system fonts, degraded.

Dimensions: H = 32 (the model's input height), W the width of one image, B batch.

Two disjoint worlds, fixed IN CODE so that no configuration can leak one into the other:
- split="train" renders with every usable font except the HELDOUT_FONT_DIRS families, and samples
  dictionary words whose stable hash is not 0 mod 10;
- split="test" renders ONLY with the held-out font families and ONLY the held-out words.
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
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .charset import Charset

HEIGHT = 32
FONT_ROOTS = ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts"))
WORDS_FILE = "/usr/share/dict/words"

# Font families only the test split uses: the directory names Debian's font packages install into.
HELDOUT_FONT_DIRS = frozenset({
    "karla", "karla-variable", "karlatamilinclined", "karlatamilupright",  # grotesque sans
    "charis",                                                               # book serif
    "courier-prime",                                                        # typewriter mono
    "quicksand",                                                            # rounded geometric sans
    "comic-neue",                                                           # informal / casual
    "fonts-oldstandard",                                                    # modern (Didone) serif
})
# Words with stable_hash(word.lower()) % HELDOUT_WORD_MOD == 0 belong to the test split only.
HELDOUT_WORD_MOD = 10

# Files that are symbol, math, music or small-caps faces: their ASCII code points are not plain letters.
_SKIP_NAME_PARTS = ("sym", "math", "music", "emoji", "dingbat", "smallcaps", "-sc", "sc-", "caps", "ornament",
                    "icons", "braille", "sign")
# Glyphs a font must draw (not .notdef, not empty) to be used: letters, digits and ASCII punctuation.
_COVERAGE_PROBE = "AHQZahgqz0159$%&@#?!{}[]<>~^|\\/_=+*\"'`;:,."
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


def stable_hash(text: str) -> int:
    """A process-independent hash (CRC-32 of the UTF-8 bytes); Python's hash() is salted per process."""
    return zlib.crc32(text.encode("utf-8"))


def is_heldout_word(word: str) -> bool:
    return stable_hash(word.lower()) % HELDOUT_WORD_MOD == 0


# -- fonts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FontInfo:
    path: str
    family_dir: str      # the font package's directory, e.g. "dejavu"
    caps_only: bool      # lowercase letters draw as capitals (e.g. Bebas Neue): render upper-cased text


def _glyph_key(font: ImageFont.FreeTypeFont, char: str):
    mask = font.getmask(char)
    return mask.size, bytes(mask)


def _probe_font(path: str) -> FontInfo | None:
    try:
        font = ImageFont.truetype(path, 24)
        notdef = {_glyph_key(font, c) for c in ("\uffff", "\U000e0fff")}
        for char in _COVERAGE_PROBE:
            key = _glyph_key(font, char)
            if key in notdef or key[0][0] == 0 or not any(key[1]):
                return None
        caps_only = _glyph_key(font, "a") == _glyph_key(font, "A") and _glyph_key(font, "g") == _glyph_key(font, "G")
    except Exception:  # an unreadable font file is skipped, never fatal
        return None
    return FontInfo(path, "", caps_only)


@functools.cache
def discover_fonts(roots: tuple[str, ...] = FONT_ROOTS) -> tuple[FontInfo, ...]:
    """Every TrueType/OpenType font under `roots` that draws the printable ASCII letters, digits and
    punctuation (checked glyph by glyph against .notdef), sorted by path so the order is reproducible.

    family_dir is the directory directly under <root>/truetype or <root>/opentype (the Debian package's).
    """
    fonts = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        for dirpath, _, files in os.walk(root):
            for name in files:
                lower = name.lower()
                if not lower.endswith((".ttf", ".otf")):
                    continue
                if any(part in lower for part in _SKIP_NAME_PARTS):
                    continue
                path = os.path.join(dirpath, name)
                info = _probe_font(path)
                if info is None:
                    continue
                # family_dir: the first directory below the root's truetype/ or opentype/ folder.
                parts = os.path.relpath(path, root).split(os.sep)
                family = parts[1] if len(parts) > 2 and parts[0] in ("truetype", "opentype") else parts[0]
                fonts.append(FontInfo(path, family, info.caps_only))
    return tuple(sorted(fonts, key=lambda f: f.path))


def fonts_for_split(split: str, fonts: Sequence[FontInfo] | None = None) -> tuple[FontInfo, ...]:
    """The fonts of split "train" (all but the held-out families) or "test" (only the held-out ones)."""
    _check_split(split)
    fonts = discover_fonts() if fonts is None else fonts
    held = split == "test"
    return tuple(f for f in fonts if (f.family_dir in HELDOUT_FONT_DIRS) == held)


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

# Kinds of text and their default weights in training.
TEXT_KINDS = ("word", "number", "price", "date", "code", "random", "line")
DEFAULT_MIX = {"word": 0.40, "number": 0.07, "price": 0.05, "date": 0.05, "code": 0.10, "random": 0.08,
               "line": 0.25}


class TextSampler:
    """Random texts of the printable ASCII kind: words, numbers, prices, dates, codes, symbol strings, lines.

    split: "train" or "test" (picks the dictionary words, see the module docstring).
    max_line_chars: text lines are cut to at most this many characters (at a word boundary).
    """

    def __init__(self, split: str = "train", *, words: Sequence[str] | None = None, max_line_chars: int = 48,
                 mix: dict[str, float] | None = None):
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

    def _line(self, rng: random.Random) -> str:
        target = rng.randint(8, self.max_line_chars)
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
                 "perspective", "underline", "strikethrough", "letter_spacing", "stroke", "tight_crop")


@dataclass
class RenderConfig:
    """How strongly a sample is degraded.

    degraded_prob: probability that a sample is rendered "degraded" (every augmentation likelier and
        stronger); the others get only mild variation (font, size, colour, padding, tiny rotation).
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
            small = nprng.normal(0, 1, (max(2, h // rng.randint(2, 8)), max(2, w // rng.randint(2, 8))))
            tex = np.asarray(Image.fromarray(((small - small.min()) / max(np.ptp(small), 1e-6) * 255)
                                             .astype(np.uint8)).resize((w, h), Image.BICUBIC), np.float32)
            tex = tex / 255.0 - 0.5
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


def render_text(text: str, font: FontInfo | str, rng: random.Random, config: RenderConfig | None = None,
                *, degraded: bool | None = None, native: bool = False) -> tuple[np.ndarray, str]:
    """Render `text` with `font` and degrade it: returns (image (32, W) uint8 grayscale, label).

    The label is `text`, upper-cased for caps-only fonts. `degraded` overrides config.degraded_prob.
    native: keep the rendered resolution (height = the font's line height plus padding, about 12-70 px)
    instead of resizing to 32 high: how test images are stored, so every recogniser resizes them its own way.
    """
    config = config or RenderConfig()
    if isinstance(font, str):
        font = FontInfo(font, os.path.basename(os.path.dirname(font)), False)
    if font.caps_only:
        text = text.upper()
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
    spacing = 0.0
    if want("letter_spacing", 0.05, 0.1):
        spacing = rng.uniform(0.05, 0.35) * size
    if spacing:
        advances = [pil_font.getlength(c) + spacing for c in text]
        text_w = int(math.ceil(sum(advances) - spacing))
    else:
        left, _, right, _ = pil_font.getbbox(text)
        text_w = int(math.ceil(max(right, pil_font.getlength(text)) - min(left, 0)))
    text_w = max(text_w, 1)

    tight = want("tight_crop", 0.1, 0.15)
    pad_l = 0 if tight else int(rng.uniform(0.0, 0.6) * size)
    pad_r = 0 if tight else int(rng.uniform(0.0, 0.6) * size)
    pad_t = int(rng.uniform(0.0, 0.35) * size) if not tight else 0
    pad_b = int(rng.uniform(0.0, 0.35) * size) if not tight else 0
    W, H = text_w + pad_l + pad_r + 2, line_h + pad_t + pad_b + 2
    textured = want("background", 0.25, 0.7)
    img = _background(rng, nprng, (W, H), bg, colored, textured)
    draw = ImageDraw.Draw(img)
    stroke = 1 if (want("stroke", 0.03, 0.08) and size >= 18) else 0
    x0, y0 = pad_l + 1, pad_t + 1
    if spacing:
        x = float(x0)
        for c, adv in zip(text, advances):
            draw.text((x, y0), c, font=pil_font, fill=fg, stroke_width=stroke, stroke_fill=fg)
            x += adv
    else:
        left = min(pil_font.getbbox(text)[0], 0)
        draw.text((x0 - left, y0), text, font=pil_font, fill=fg, stroke_width=stroke, stroke_fill=fg)
    thickness = max(1, round(size / 14))
    if want("underline", 0.02, 0.08):
        y = y0 + ascent + max(1, descent // 3)
        draw.line((x0, y, x0 + text_w, y), fill=fg, width=thickness)
    if want("strikethrough", 0.01, 0.06):
        y = y0 + int(ascent * rng.uniform(0.55, 0.75))
        draw.line((x0, y, x0 + text_w, y), fill=fg, width=thickness)

    # Geometry: rotation, then shear / perspective in one transform.
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
                 words: Sequence[str] | None = None, max_line_chars: int = 48):
        _check_split(split)
        self.split = split
        self.charset = charset or Charset.printable_ascii()
        self.sampler = TextSampler(split, words=words, mix=mix, max_line_chars=max_line_chars)
        self.render_config = render or RenderConfig()
        self.fonts = fonts_for_split(split, fonts)
        if not self.fonts:
            raise RuntimeError(f"no usable fonts for split {split!r} under {', '.join(FONT_ROOTS)} "
                               f"(held-out families: {sorted(HELDOUT_FONT_DIRS)}); install e.g. the Debian "
                               "packages fonts-dejavu-core (train) and fonts-karla, fonts-sil-charis (test)")
        self._by_family: dict[str, list[FontInfo]] = {}
        for f in self.fonts:
            self._by_family.setdefault(f.family_dir, []).append(f)
        self._families = sorted(self._by_family)

    def sample(self, rng: random.Random, kind: str | None = None, degraded: bool | None = None
               ) -> tuple[np.ndarray, str]:
        for _ in range(20):
            text = self.sampler.sample(rng, kind)
            text = "".join(c for c in text if c in self.charset).strip()
            if text:
                break
        else:
            text = "a" if "a" in self.charset else self.charset.characters[0]
        font = rng.choice(self._by_family[rng.choice(self._families)])  # family first: no family dominates
        image, label = render_text(text, font, rng, self.render_config, degraded=degraded)
        return ensure_ctc_width(image, label), label


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]: the model's input normalisation."""
    return images_uint8.float().div_(127.5).sub_(1.0)


@dataclass
class Batch:
    """images (B, 1, 32, W) float32 in [-1, 1]; widths (B,) real widths before padding; texts B labels."""

    images: torch.Tensor
    widths: torch.Tensor
    texts: list[str] = field(default_factory=list)


def pad_batch(arrays: Sequence[np.ndarray], texts: Sequence[str] = (), min_width: int = 8) -> Batch:
    """Right-pad grayscale (32, W_i) uint8 images to the widest by repeating each image's last column
    (the background continues, no hard edge), then normalise to [-1, 1]."""
    if len(arrays) == 0:
        raise ValueError("arrays must not be empty")
    width = max(min_width, max(a.shape[1] for a in arrays))
    out = np.empty((len(arrays), 1, HEIGHT, width), dtype=np.uint8)
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[0] != HEIGHT:
            raise ValueError(f"arrays[{i}] must be ({HEIGHT}, W) uint8, got shape {a.shape}")
        out[i, 0, :, : a.shape[1]] = a
        if a.shape[1] < width:
            out[i, 0, :, a.shape[1]:] = a[:, -1:]
    widths = torch.tensor([a.shape[1] for a in arrays], dtype=torch.int64)
    return Batch(normalize(torch.from_numpy(out)), widths, list(texts))


def widen_batch(batch: Batch, width: int) -> Batch:
    """`batch` right-padded to `width` as pad_batch pads (each image's last column repeated): the images that
    pad_batch(arrays, texts, min_width=width) makes. Data-parallel training pads every process's shard to
    the width of the whole global batch with it."""
    current = batch.images.shape[-1]
    if width < current:
        raise ValueError(f"width must be at least the batch's width {current}, got {width}")
    if width == current:
        return batch
    # After pad_batch an image's last column is its own last column (or a copy of it), so repeating the
    # batch's last column continues every image exactly as a wider pad_batch would.
    extra = batch.images[..., -1:].expand(-1, -1, -1, width - current)
    return Batch(torch.cat([batch.images, extra], dim=-1), batch.widths, batch.texts)


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

# name -> (text kinds, degraded: True / False / None = either, 50:50); rendered with split="test".
HELDOUT_SUBSETS = {
    "clean_words": (("word",), False),
    "degraded_words": (("word",), True),
    "codes_numbers": (("number", "price", "date", "code"), None),
    "lines": (("line",), None),
}


def render_heldout(subset: str, n: int, *, seed: int = 2024, max_line_chars: int = 44,
                   native: bool = True) -> list[tuple[np.ndarray, str]]:
    """n test-split samples of a HELDOUT_SUBSETS subset: held-out fonts and words only, the training
    augmentations, stored at their rendered resolution (native=True). Deterministic in (subset, n, seed)."""
    if subset not in HELDOUT_SUBSETS:
        raise ValueError(f"subset must be one of {list(HELDOUT_SUBSETS)}, got {subset!r}")
    kinds, degraded = HELDOUT_SUBSETS[subset]
    gen = SynthGenerator("test", max_line_chars=max_line_chars)
    rng = random.Random(f"heldout/{subset}/{seed}")
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        text = gen.sampler.sample(rng, kind)
        text = "".join(c for c in text if c in gen.charset).strip() or "a"
        font = rng.choice(gen._by_family[rng.choice(gen._families)])
        deg = (rng.random() < 0.5) if degraded is None else degraded
        out.append(render_text(text, font, rng, gen.render_config, degraded=deg, native=native))
    return out
