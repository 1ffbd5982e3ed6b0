"""Saves a grid of synthetic training samples as a PNG, to look at before training on them.

    python scripts/sample_grid.py OUT.png [--n 48] [--split train] [--degraded-prob 0.5] [--max-line-chars 100]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from crnn_fast.data.synth import RenderConfig, SynthGenerator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--split", default="train")
    parser.add_argument("--seed", default="grid")
    parser.add_argument("--degraded-prob", type=float, default=0.5)
    parser.add_argument("--max-line-chars", type=int, default=100)
    parser.add_argument("--max-width", type=int, default=1600)
    args = parser.parse_args()

    gen = SynthGenerator(args.split, max_line_chars=args.max_line_chars,
                         render=RenderConfig(degraded_prob=args.degraded_prob, max_width=args.max_width))
    rng = random.Random(args.seed)
    start = time.perf_counter()
    samples = [gen.sample(rng) for _ in range(args.n)]
    per_image = (time.perf_counter() - start) / args.n * 1e3
    label_font = ImageFont.load_default()
    width = max(800, max(img.shape[1] for img, _ in samples))
    row = 32 + 14
    grid = Image.new("L", (width, row * len(samples)), 255)
    draw = ImageDraw.Draw(grid)
    for i, (img, text) in enumerate(samples):
        grid.paste(Image.fromarray(np.asarray(img)), (0, i * row))
        draw.text((2, i * row + 33), text, font=label_font, fill=0)
    grid.save(args.out)
    print(f"{args.n} samples, {per_image:.1f} ms per image, widths {min(s[0].shape[1] for s in samples)}-"
          f"{max(s[0].shape[1] for s in samples)}; wrote {args.out}")


if __name__ == "__main__":
    main()
