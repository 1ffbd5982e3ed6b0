"""Dump what every decoding path returns over many configurations, bit for bit, to compare two versions of the code.

    python scripts/dump_decoder_outputs.py before.jsonl      # on the old code
    python scripts/dump_decoder_outputs.py after.jsonl       # on the new code
    cmp before.jsonl after.jsonl                             # a refactor must leave them identical

Covers CTCDecoder (greedy, beam widths, top_k, beam_threshold, blank_skip_threshold, token_min_logp, nbest,
trie and nearest lexicons with and without a word separator, character LM with lm_weight and insertion_bonus, a
blank that is not class 0) on the "ref" and compiled "cpu" backends, crnn_fast.ctc_greedy and ctc_beam_search
directly, and Recognizer results (text, confidence, per-character confidences) of a small random model, greedy
and with beam search. Floats are written with float.hex, so equal files mean bit-identical outputs. Inputs are
seeded: the same code writes the same file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random

import numpy as np
import torch

import crnn_fast
from crnn_fast import CTCDecoder, Recognizer
from crnn_fast.data import Charset
from crnn_fast.formats.lm import CharNgramLM
from crnn_fast.models.crnn import CRNN, CRNNConfig

CHARSET = Charset("abcdeo t")
WORDS = ["a", "at", "bat", "cat", "coat", "dot", "toe", "tea", "bee", "code", "cote", "dab"]
LM_TEXT = ["a cat at a bat", "the cat ate the toe", "to code a coat", "dot the tea", "a bee to a dab"]


def exact(value):
    """Floats as hex (bit-exact), containers recursively."""
    if isinstance(value, float):
        return value.hex() if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return [exact(v) for v in value]
    if isinstance(value, torch.Tensor):
        return exact(value.tolist()) + [str(value.dtype)]
    return value


def log_probs_batch(seed: int, B: int, T: int, C: int, dtype: torch.dtype, peak: float) -> torch.Tensor:
    """Peaky random log-probabilities (a trained model's look): one class per frame raised by `peak`."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    best = torch.randint(0, C, (B, T), generator=g)
    logits.scatter_add_(2, best.unsqueeze(-1), torch.full((B, T, 1), peak, dtype=torch.float64))
    return logits.log_softmax(-1).to(dtype)


def decoder_configs():
    lm = CharNgramLM.from_text(LM_TEXT, order=3)
    yield "greedy", {"beam_width": 1}
    for beam in (2, 8, 33):
        yield f"beam{beam}", {"beam_width": beam, "nbest": min(3, beam)}
    yield "top_k", {"beam_width": 8, "top_k": 3, "nbest": 2}
    yield "threshold", {"beam_width": 16, "beam_threshold": 4.0}
    yield "blank_skip", {"beam_width": 8, "blank_skip_threshold": 0.9}
    yield "blank_skip_low", {"beam_width": 1, "blank_skip_threshold": 0.3}
    yield "token_min_logp", {"beam_width": 8, "token_min_logp": -3.0}
    yield "bonus", {"beam_width": 8, "insertion_bonus": 1.5}
    yield "lm", {"beam_width": 8, "lm": lm, "lm_weight": 0.5, "insertion_bonus": 0.5, "nbest": 3}
    yield "lm_heavy", {"beam_width": 4, "lm": lm, "lm_weight": 2.0}
    yield "trie", {"beam_width": 8, "lexicon": WORDS, "nbest": 2}
    yield "trie_lm", {"beam_width": 8, "lexicon": WORDS, "lm": lm, "lm_weight": 0.7, "insertion_bonus": 0.2}
    yield "nearest", {"beam_width": 4, "lexicon": WORDS + ["a cat"], "lexicon_mode": "nearest", "nbest": 3}
    yield "nearest_lm", {"beam_width": 2, "lexicon": WORDS, "lexicon_mode": "nearest", "lm": lm, "lm_weight": 0.4}
    yield "blank_last", {"beam_width": 8, "blank": len(CHARSET.characters), "nbest": 2}


def dump_decoders(write, backends):
    shapes = [(1, 1), (3, 7), (4, 40), (2, 97)]
    for (name, options), (B, T), dtype, backend in itertools.product(
            decoder_configs(), shapes, (torch.float32, torch.float64), backends):
        options = dict(options)
        blank = options.pop("blank", 0)
        decoder = CTCDecoder(CHARSET, blank=blank, backend=backend, **options)
        seed = (B * 1000 + T) * 7 + len(name)
        lp = log_probs_batch(seed, B, T, CHARSET.num_classes, dtype, peak=4.0)
        lengths = torch.tensor([T - (b % 3) if T > 2 else T for b in range(B)])
        hyps = decoder.decode(lp, lengths)
        write({"decoder": name, "B": B, "T": T, "dtype": str(dtype), "backend": backend,
               "hyps": [[exact(list(h)) for h in item] for item in hyps]})


def dump_ops(write, backends):
    for (B, T), dtype, backend in itertools.product([(2, 9), (5, 64)], (torch.float16, torch.float32), backends):
        lp = log_probs_batch(B * 31 + T, B, T, CHARSET.num_classes, dtype, peak=3.0)
        lengths = torch.arange(T, T - B, -1).clamp(min=0)
        greedy = crnn_fast.ctc_greedy(lp, lengths, backend=backend)
        write({"op": "ctc_greedy", "B": B, "T": T, "dtype": str(dtype), "backend": backend,
               "out": [exact(t) for t in greedy]})
        beam = crnn_fast.ctc_beam_search(lp, lengths, beam_width=6, nbest=2, backend=backend)
        write({"op": "ctc_beam_search", "B": B, "T": T, "dtype": str(dtype), "backend": backend,
               "out": [exact(t) for t in beam]})


def dump_recognizer(write):
    charset = Charset.printable_ascii()
    torch.manual_seed(0)
    model = CRNN(charset.num_classes, variant=CRNNConfig(channels=(4, 8, 8, 8, 16, 16, 16), lstm_hidden=8))
    with torch.no_grad():  # a random model emits mostly blanks: spread its output so that texts appear
        model.rnn[-1].embedding.weight.mul_(40.0)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, int(w)), dtype=np.uint8) for w in rng.integers(16, 400, 21)]
    images.append(np.full((32, 40), 255, dtype=np.uint8))
    rec = Recognizer(model, charset, device="cpu", batch_size=8)
    for beam in (None, 5):
        for r in rec.recognize(images, beam=beam):
            write({"recognizer": "beam" if beam else "greedy", "text": r.text, "confidence": exact(r.confidence),
                   "char_confidences": exact(list(r.char_confidences)), "error": r.error})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the JSON-lines file to write")
    args = parser.parse_args()
    random.seed(0)
    backends = ["ref"] + (["cpu"] if crnn_fast.backends()["compiled"].get("ctc_beam_search") else [])
    lines = 0
    with open(args.out, "w") as f:
        def write(record):
            nonlocal lines
            f.write(json.dumps(record, sort_keys=True) + "\n")
            lines += 1
        dump_decoders(write, backends)
        dump_ops(write, backends)
        dump_recognizer(write)
    print(f"wrote {lines} records ({', '.join(backends)} backends) to {args.out}")


if __name__ == "__main__":
    main()
