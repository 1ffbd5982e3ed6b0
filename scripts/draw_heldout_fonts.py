"""Draws the font packages held out of training for our own test split, at random within each style, and
writes their folders to crnn_fast/data/heldout_fonts.txt (run once after scripts/install_training_data.sh; the
file is committed, so that the split stays fixed when fonts are added later: a folder not in it trains).

A package is the unit, not a family name: the families of one package are often one design in several cuts
("Spleen 16x32" and "Spleen 32x64", "Tiresias Infofont" and "Tiresias PCfont").

    python scripts/draw_heldout_fonts.py [--fraction 0.15] [--seed 'crnn_fast heldout fonts v1']
"""

from __future__ import annotations

import argparse
import collections
import math
import random

from crnn_fast.data import fonts

REGULAR = ("regular", "book", "roman", "normal", "medium", "")


def package_styles(found) -> dict[str, str]:
    """package folder -> style of its regular faces (of all its faces when it has none)."""
    faces = collections.defaultdict(list)
    for f in found:
        faces[f.family_dir].append(f)
    styles = {}
    for family, members in faces.items():
        regular = [f.style for f in members if f.weight.lower() in REGULAR]
        styles[family] = collections.Counter(regular or [f.style for f in members]).most_common(1)[0][0]
    return styles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.15)
    parser.add_argument("--seed", default="crnn_fast heldout fonts v1")
    args = parser.parse_args()

    found = [f for f in fonts.discover_fonts() if f.family_dir not in fonts.HELDOUT_FONT_DIRS]
    legacy = sorted({f.family_dir for f in fonts.discover_fonts() if f.family_dir in fonts.HELDOUT_FONT_DIRS})
    by_style = collections.defaultdict(list)
    for package, style in sorted(package_styles(found).items()):
        by_style[style].append(package)
    rng = random.Random(args.seed)
    lines = ["# Font folders (packages) of our own test split (crnn_fast.data.fonts), drawn by",
             "# scripts/draw_heldout_fonts.py",
             f"# (fraction {args.fraction} of each style, seed {args.seed!r}) from the fonts that",
             "# scripts/install_training_data.sh installs; fonts.HELDOUT_FONT_DIRS are held out too:",
             f"# {', '.join(legacy)}."]
    for style in fonts.STYLES:
        packages = by_style.get(style, [])
        drawn = sorted(rng.sample(packages, math.ceil(args.fraction * len(packages)))) if packages else []
        lines.append(f"# {style}: {len(drawn)} of {len(packages)} packages")
        lines += drawn
        print(f"{style:10s} {len(drawn):3d} of {len(packages):3d}: {', '.join(drawn)}")
    fonts.HELDOUT_FAMILIES_FILE.write_text("\n".join(lines) + "\n")
    print(f"wrote {fonts.HELDOUT_FAMILIES_FILE}")


if __name__ == "__main__":
    main()
