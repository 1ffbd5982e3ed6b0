"""The fonts synthetic text is rendered with: discovery, glyph-coverage probe, style, and the train/test split.

Three disjoint groups, fixed in code so that no configuration can move a font from one to another:
- reserved: families kept for an outside evaluation. Never rendered by crnn_fast, whether or not their
  packages are installed (matched by the package's folder and by the family name inside the file);
- test: the font folders (Debian packages) of HELDOUT_FONT_DIRS (the fonts CI's tests render the test split
  with) and those named in heldout_fonts.txt beside this file, drawn at random within each style by
  scripts/draw_heldout_fonts.py;
- train: every other installed font that draws all 95 printable ASCII characters.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_ROOTS = ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts"))

# Families kept for an outside evaluation: the folders their Debian packages install into ...
RESERVED_FONT_DIRS = frozenset({
    "urw-base35", "linux-libertine", "libertine", "ebgaramond", "cantarell", "go", "crosextra", "lato", "roboto",
    "open-sans", "opensans", "texgyre", "inconsolata", "freefont",
})
# ... and their family names (lower case, prefixes), for the same families installed any other way. FreeFont is
# drawn from the URW base 35 outlines.
RESERVED_FAMILY_PREFIXES = (
    "nimbus", "urw ", "urw-", "c059", "p052", "z003", "d050000l", "standard symbols", "linux libertine",
    "linux biolinum", "eb garamond", "cantarell", "go ", "caladea", "carlito", "lato", "roboto", "open sans",
    "tex gyre", "texgyre", "inconsolata", "freeserif", "freesans", "freemono",
)
RESERVED_FAMILY_NAMES = frozenset({"go"})
# Installed but not rendered: fonts-aenigma's 465 display faces, most of them pictures more than letters,
# which would outnumber every text face.
UNUSED_FONT_DIRS = frozenset({"aenigma"})
# Families whose ASCII code points draw Greek letters.
UNUSED_FAMILIES = frozenset({"Alfa-beta", "Ellhnikh"})

# Font folders only the test split uses (the packages .ci/run installs for the tests of the test split).
HELDOUT_FONT_DIRS = frozenset({
    "karla", "karla-variable", "karlatamilinclined", "karlatamilupright",  # grotesque sans
    "charis",                                                               # book serif
    "courier-prime",                                                        # typewriter mono
    "quicksand",                                                            # rounded geometric sans
    "comic-neue",                                                           # informal / casual
    "fonts-oldstandard",                                                    # modern (Didone) serif
})
HELDOUT_FAMILIES_FILE = Path(__file__).with_name("heldout_fonts.txt")

STYLES = ("serif", "sans", "mono", "script", "display", "condensed")

# Files that are symbol, math, music or small-caps faces: their ASCII code points are not plain letters.
_SKIP_NAME_PARTS = ("sym", "math", "music", "emoji", "dingbat", "smallcaps", "-sc", "sc-", "caps", "ornament",
                    "icons", "braille", "sign")
PRINTABLE_ASCII = "".join(chr(c) for c in range(33, 127))  # the space is checked by its advance instead

# Name words that mark handwriting/casual and display faces (a glyph probe cannot tell these apart from
# text faces reliably).
_SCRIPT_WORDS = ("script", "hand", "brush", "callig", "dancing", "kaushan", "lobster", "kristi", "isabella",
                 "rufscript", "leckerli", "comic", "humor", "purisa", "essays", "dkg", "klaudia", "berenika",
                 "tomson", "summersby", "femke", "staypuft", "dustin", "ecolier", "okolaks", "chalk", "marker")
_DISPLAY_WORDS = ("display", "title", "decor", "poster", "stencil", "shadow", "outline", "inline", "creep",
                  "cherry", "rocknroll", "bebas", "gotico", "blankenburg", "fantasma", "f500", "aenigma",
                  "radis", "3270", "sixtyfour", "atari", "glasstty", "engadget", "train", "eurofurence",
                  "beteckna", "national park", "roadgeek", "tiresias", "ocr", "lindenhill", "black", "heavy")
_CONDENSED_WORDS = ("condensed", "narrow", "compressed", "cond", "kaffeesatz", "league gothic")


@dataclass(frozen=True)
class FontInfo:
    path: str
    family_dir: str      # the font package's folder, e.g. "dejavu"
    caps_only: bool      # lowercase letters draw as capitals or small capitals: render upper-cased text
    family: str = ""     # the family name stored in the file, e.g. "DejaVu Sans"
    style: str = ""      # one of STYLES
    weight: str = ""     # the file's style name, e.g. "Bold Italic"
    no_ligatures: bool = False  # its standard ligatures join letters into another letter ("ae" -> "\u00e6")


def _glyph_key(font: ImageFont.FreeTypeFont, char: str):
    mask = font.getmask(char)
    return mask.size, bytes(mask)


def _ink_widths(font: ImageFont.FreeTypeFont, char: str) -> tuple[int, int]:
    """(stem, foot): the ink width of `char` at half its height, and the widest ink in its bottom 12%."""
    left, top, right, bottom = font.getbbox(char)
    img = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), char, font=font, fill=255)
    ink = np.asarray(img) > 100
    rows = [np.flatnonzero(r) for r in ink if r.any()]
    if len(rows) < 8:
        return 0, 0
    width = [int(r[-1] - r[0] + 1) for r in rows]
    return width[len(rows) // 2], max(width[-max(1, len(rows) // 8):])


def _similarity(font: ImageFont.FreeTypeFont, lower: str, upper: str) -> float:
    """IoU of the ink of `lower` and of `upper` scaled to `lower`'s box: ~1 for small capitals."""
    masks = []
    for char in (lower, upper):
        left, top, right, bottom = font.getbbox(char)
        img = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
        ImageDraw.Draw(img).text((-left, -top), char, font=font, fill=255)
        masks.append(img)
    a = np.asarray(masks[0]) > 127
    b = np.asarray(masks[1].resize(masks[0].size, Image.BILINEAR)) > 127
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def _draws_capitals(font: ImageFont.FreeTypeFont) -> bool:
    """Lowercase letters drawn as capitals, full size or small (Bebas Neue, small-caps faces)."""
    return min(_similarity(font, c, c.upper()) for c in "aegr") > 0.72


def classify_style(font: ImageFont.FreeTypeFont, name: str) -> str:
    """serif / sans / mono / script / display / condensed, from the name's words and the glyphs' metrics."""
    lower = name.lower()
    if any(w in lower for w in _SCRIPT_WORDS):
        return "script"
    widths = {font.getlength(c) for c in "iWm.M"}
    if len(widths) == 1:
        return "mono"
    if any(w in lower for w in _DISPLAY_WORDS):
        return "display"
    size = font.size
    if any(w in lower for w in _CONDENSED_WORDS) or font.getlength("abcdefghijklmnopqrstuvwxyz") < 10.5 * size:
        return "condensed"
    # Serifs: the foot of an "I" (and of an "l") is much wider than its stem; measured at 96 px.
    big = font.font_variant(size=96)
    feet = [_ink_widths(big, c) for c in "Il"]
    return "serif" if all(stem and foot >= 1.8 * stem for stem, foot in feet) else "sans"


def is_reserved(family_dir: str, family: str) -> bool:
    lower = family.lower().strip()
    return (family_dir.lower() in RESERVED_FONT_DIRS or lower in RESERVED_FAMILY_NAMES
            or lower.startswith(RESERVED_FAMILY_PREFIXES))


def probe_font(path: str, family_dir: str = "") -> FontInfo | None:
    """The font's FontInfo if it draws every printable ASCII character (not .notdef, not blank) and a space
    that advances; None otherwise or if the file cannot be read."""
    try:
        font = ImageFont.truetype(path, 24)
        notdef = {_glyph_key(font, c) for c in ("\uffff", "\U000e0fff")}
        seen = {}
        for char in PRINTABLE_ASCII:
            key = _glyph_key(font, char)
            if key in notdef or key[0][0] == 0 or not any(key[1]):
                return None
            seen.setdefault(key, char)
        # A font that draws most characters with a handful of shapes (a fallback box with a few real glyphs).
        if len(seen) < 85 or font.getlength(" ") <= 0:
            return None
        big = font.font_variant(size=64)
        caps_only = _draws_capitals(big)
        # Ligatures that turn two letters into another letter ("ae" -> a single "\u00e6") make the image
        # disagree with its label: such a font is used with its standard ligatures off, or not at all when
        # turning them off does not help (some fonts apply them unconditionally).
        def joins(pair, features=None):
            return font.getlength(pair, features=features) < 0.85 * sum(font.getlength(c) for c in pair)

        pairs = ("ae", "oe", "AE", "OE")
        no_ligatures = any(joins(p) for p in pairs)
        if no_ligatures and any(joins(p, ["-liga", "-clig", "-dlig", "-rlig"]) for p in pairs):
            return None
        family, weight = font.getname()
        family = family or os.path.splitext(os.path.basename(path))[0]
        style = classify_style(font, f"{family} {os.path.basename(path)} {family_dir}")
    except Exception:  # an unreadable or broken font file is skipped, never fatal
        return None
    return FontInfo(path, family_dir, caps_only, family, style, weight or "", no_ligatures)


def _family_dir(path: str, root: str) -> str:
    """The first folder below the root's truetype/ or opentype/ folder (the Debian package's)."""
    parts = os.path.relpath(path, root).split(os.sep)
    return parts[1] if len(parts) > 2 and parts[0] in ("truetype", "opentype") else parts[0]


@functools.cache
def discover_fonts(roots: tuple[str, ...] = FONT_ROOTS) -> tuple[FontInfo, ...]:
    """Every TrueType/OpenType font under `roots` that draws the printable ASCII characters, except the
    reserved families, sorted by path so the order is reproducible."""
    fonts = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        for dirpath, _, files in os.walk(root):
            for name in files:
                lower = name.lower()
                if not lower.endswith((".ttf", ".otf")) or any(part in lower for part in _SKIP_NAME_PARTS):
                    continue
                path = os.path.join(dirpath, name)
                family_dir = _family_dir(path, root)
                if family_dir.lower() in RESERVED_FONT_DIRS or family_dir.lower() in UNUSED_FONT_DIRS:
                    continue
                info = probe_font(path, family_dir)
                if info is not None and not is_reserved(family_dir, info.family) \
                        and info.family not in UNUSED_FAMILIES:
                    fonts.append(info)
    return tuple(sorted(fonts, key=lambda f: f.path))


@functools.cache
def heldout_font_dirs() -> frozenset[str]:
    """HELDOUT_FONT_DIRS and the font folders of heldout_fonts.txt (one per line; '#' starts a comment)."""
    if not HELDOUT_FAMILIES_FILE.exists():
        return HELDOUT_FONT_DIRS
    names = (line.split("#", 1)[0].strip() for line in HELDOUT_FAMILIES_FILE.read_text().splitlines())
    return HELDOUT_FONT_DIRS | {n for n in names if n}


def is_heldout_font(font: FontInfo) -> bool:
    return font.family_dir in heldout_font_dirs()


def fonts_for_split(split: str, fonts: Sequence[FontInfo] | None = None) -> tuple[FontInfo, ...]:
    """The fonts of split "train" (all but the held-out families) or "test" (only the held-out ones)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    fonts = discover_fonts() if fonts is None else fonts
    held = split == "test"
    return tuple(f for f in fonts if is_heldout_font(f) == held)


def family_key(font: FontInfo) -> str:
    """What "one family" means when sampling fonts: the family name, else the package folder."""
    return font.family or font.family_dir
