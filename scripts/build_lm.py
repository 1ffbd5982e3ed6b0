"""Builds the character n-gram LM shipped beside the default model, from the training corpus
(crnn_fast.data.corpus, train split), and tunes lm_weight and insertion_bonus on a validation set.

    python scripts/build_lm.py OUT.lm.safetensors [--order 6] [--max-chars 2000000] [--model crnn_small_ascii]
        [--val-size 768] [--beam 16] [--json tune.json]

OUT: .safetensors (CharNgramLM.save_tensors, what ships: loads in seconds) or .arpa / .arpa.gz.
The corpus's train paragraphs are shuffled once (fixed seed) and split: the first --max-chars characters
train the LM, the next paragraphs give the validation set's sentence lines, so the LM is tuned on text it
has not seen. The validation images are rendered from the training fonts with the training mix (words,
codes, numbers, lines, sentences), never from the held-out fonts or paragraphs of the test split. It prints
exact match and CER per text kind for greedy decoding and every (lm_weight, insertion_bonus) of the grid, the
decoding time against the network's, and the best setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import time

import torch
from rapidfuzz.distance import Levenshtein

from crnn_fast.data import corpus
from crnn_fast.data.synth import TEXT_KINDS, RenderConfig, SynthGenerator
from crnn_fast.decoding import CharNgramLM, CTCDecoder
from crnn_fast.formats.image_batch import pad_batch
from crnn_fast.models.pretrained import load_pretrained
from crnn_fast.ops import ctc_greedy

SEED = "crnn_fast lm v1"


def split_paragraphs(max_chars: int) -> tuple[list[str], list[str]]:
    paragraphs = list(corpus.load_corpus("train"))
    random.Random(SEED).shuffle(paragraphs)
    lm_part, size = [], 0
    for i, p in enumerate(paragraphs):
        if size >= max_chars:
            return lm_part, paragraphs[i:]
        lm_part.append(p)
        size += len(p) + 1
    raise ValueError(f"the corpus has fewer than {max_chars} characters")


def render_val(n: int, paragraphs: list[str], max_line_chars: int, charset):
    gen = SynthGenerator("train", charset=charset, max_line_chars=max_line_chars, paragraphs=paragraphs,
                         render=RenderConfig(max_width=1600))
    rng = random.Random(f"{SEED}/val")
    kinds = [TEXT_KINDS[i % len(TEXT_KINDS)] for i in range(n)]
    samples = [(kind, *gen.sample(rng, kind=kind)) for kind in kinds]
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--max-chars", type=int, default=2_000_000)
    parser.add_argument("--model", default=None)
    parser.add_argument("--val-size", type=int, default=768)
    parser.add_argument("--max-line-chars", type=int, default=100)
    parser.add_argument("--beam", type=int, default=16)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.2, 0.35, 0.5, 0.65, 0.8])
    parser.add_argument("--bonuses", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--reuse", action="store_true", help="load OUT if it exists instead of building it")
    parser.add_argument("--build-only", action="store_true", help="build the LM, skip tuning")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lm_text, val_text = split_paragraphs(args.max_chars)
    t0 = time.perf_counter()
    if args.reuse and os.path.exists(args.out):
        lm = CharNgramLM.load_tensors(args.out) if args.out.endswith(".safetensors") else CharNgramLM.load(args.out)
        how = "loaded"
    else:
        lm = CharNgramLM.from_text(lm_text, order=args.order)
        lm.save_tensors(args.out) if args.out.endswith(".safetensors") else lm.save(args.out)
        how = "built"
    print(f"LM: order {lm.order}, {sum(map(len, lm_text)) / 1e6:.2f}M characters from {len(lm_text)} paragraphs, "
          f"{len(lm)} n-grams {lm.counts()}, {how} in {time.perf_counter() - t0:.0f} s -> {args.out}", flush=True)
    if args.build_only:
        return

    model, charset, _meta = load_pretrained(args.model)
    model.eval()
    samples = render_val(args.val_size, val_text, args.max_line_chars, charset)
    order = sorted(range(len(samples)), key=lambda i: samples[i][1].shape[1])
    log_probs, labels, kinds = [], [], []
    net_s = 0.0
    with torch.inference_mode():
        for start in range(0, len(order), 32):
            idx = order[start:start + 32]
            batch = pad_batch([samples[i][1] for i in idx], [samples[i][2] for i in idx])
            t = time.perf_counter()
            lp = model(batch.images, widths=batch.widths).float()  # (B, T, K) log-probs
            net_s += time.perf_counter() - t
            lens = model.output_lengths(batch.widths)
            log_probs.append((lp, lens))
            labels += batch.texts
            kinds += [samples[i][0] for i in idx]

    def evaluate(decode) -> tuple[dict, float]:
        preds, t = [], time.perf_counter()
        for lp, lens in log_probs:
            preds += decode(lp, lens)
        seconds = time.perf_counter() - t
        table = {}
        for kind in (*TEXT_KINDS, "all"):
            pairs = [(p, y) for p, y, k in zip(preds, labels, kinds) if kind in ("all", k)]
            exact = sum(p == y for p, y in pairs) / len(pairs)
            cer = sum(Levenshtein.distance(p, y) for p, y in pairs) / max(1, sum(len(y) for _, y in pairs))
            table[kind] = {"exact": exact, "cer": cer}
        return table, seconds

    def greedy(lp, lens):
        out = ctc_greedy(lp, lens)
        return [charset.decode(t[:n]) for t, n in zip(out.tokens.tolist(), out.token_lengths.tolist())]

    rows = []
    table, seconds = evaluate(greedy)
    rows.append({"decoding": "greedy", "lm_weight": None, "insertion_bonus": None, "decode_s": seconds, **{
        f"{k}_{m}": v for k, d in table.items() for m, v in d.items()}})
    print(f"network {net_s:.2f} s for {len(labels)} images")
    print(f"{'decoding':>24s} " + " ".join(f"{k[:8]:>8s}" for k in (*TEXT_KINDS, "all")) + "  decode_s")

    def show(name, table, seconds):
        print(f"{name:>24s} " + " ".join(f"{table[k]['exact']:8.3f}" for k in (*TEXT_KINDS, "all"))
              + f"  {seconds:7.2f}", flush=True)

    show("greedy", table, seconds)
    for weight, bonus in itertools.product(args.weights, args.bonuses):
        decoder = CTCDecoder(charset, beam_width=args.beam, lm=lm, lm_weight=weight, insertion_bonus=bonus,
                             backend="cpu")

        def beam(lp, lens, decoder=decoder):
            return [hyps[0].text if hyps else "" for hyps in decoder.decode(lp, lens)]

        table, seconds = evaluate(beam)
        show(f"beam {args.beam} a={weight} b={bonus}", table, seconds)
        rows.append({"decoding": f"beam{args.beam}+lm", "lm_weight": weight, "insertion_bonus": bonus,
                     "decode_s": seconds, **{f"{k}_{m}": v for k, d in table.items() for m, v in d.items()}})
    best = max(rows[1:], key=lambda r: (r["all_exact"], -r["all_cer"]))
    print(f"best: lm_weight {best['lm_weight']}, insertion_bonus {best['insertion_bonus']}: exact "
          f"{best['all_exact']:.3f} (greedy {rows[0]['all_exact']:.3f}); decoding {best['decode_s']:.2f} s vs "
          f"network {net_s:.2f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"order": args.order, "max_chars": args.max_chars, "val_size": len(labels), "beam": args.beam,
                       "network_s": net_s, "rows": rows, "best": best}, f, indent=1)


if __name__ == "__main__":
    main()
