"""CTC decoding on the CPU: crnn_fast.CTCDecoder against pyctcdecode, fast-ctc-decode and flashlight-text.

Throughput (sequences/s) and agreement side by side in one run, at equal beam width, on OCR shapes (B 256, T 26,
C 96: printable ASCII) and line shapes (B 32, T 400, C 96 and C 6,002: 6,000 CJK characters and a space), for
beam widths 1, 4, 16, 64; plain beam search, with a lexicon, and with a language model.

Inputs are synthetic recognizer outputs: log-softmax of logits whose best path spells a known text (words from a
Zipf-distributed vocabulary, 1-2 frames per character, blanks between) with N(0, 1.5) background noise, a peak of
3-12 nats on the right class, and on 12% of the character frames a confusable class close behind. The exact
column is the share of items whose top hypothesis equals that text, CER the character error rate against it, and
dlogP the mean of log P(text | log-probs) of the decoder's top text minus that of crnn_fast's (same mode):
negative means crnn_fast found the more probable labelling.

How each decoder runs (each with its own defaults unless said):
  crnn_fast: CTCDecoder.decode() on the whole batch, with torch.set_num_threads(1) and (2); beam width 1 is
    best-path (greedy) decoding; no top-k, no beam threshold (its pruning is exact: same result as the full
    prefix beam search of that width). +lexicon: the vocabulary as a trie; +LM: a character 5-gram
    (interpolated Kneser-Ney, CharNgramLM) on 4,000 sentences, lm_weight 0.5, insertion bonus 1.0.
  crnn_fast pruned: the same decoder (1 thread) with pyctcdecode's default pruning: beam_threshold 10 (its
    beam_prune_logp -10: prefixes more than 10 nats below the best are dropped) and token_min_logp -5 (the same
    option: a frame extends prefixes only by the classes at log-prob >= -5 and its best class; about 1 class
    per frame at C 6,002, up to ~60 on the flat frames at C 96). Unlike pyctcdecode it still scores the blank
    and the repeat of every prefix on every frame (the floor prunes extensions only). Not exact: its agree
    column is its agreement with exact crnn_fast of the same mode.
  pyctcdecode: decode() per sequence, its defaults (beam_prune_logp -10, token_min_logp -5); +LM: a word 3-gram
    (KenLM, ARPA written by crnn_fast's Kneser-Ney on the same sentences) with the vocabulary as unigrams,
    alpha 0.5, beta 1.0.
  fast-ctc-decode: beam_search() per sequence on probabilities, beam_cut_threshold 0.5 / C (its default 0 keeps
    every class and runs out of memory at C 6,002).
  flashlight-text: LexiconFreeDecoder with ZeroLM per sequence, beam_size_token = C, beam_threshold 1000,
    log_add (prefix probabilities summed, as ours).
The peers decode one sequence at a time, for at most --budget seconds per cell (at least one sequence), each in a
forked child capped at 6 GB more memory and stopped after --budget + --timeout seconds (a row then says why);
their throughput is sequences decoded / time taken. Agreement: share of those sequences whose top text (stripped)
equals crnn_fast's (1 thread, same lexicon/LM mode; for pyctcdecode +LM: crnn_fast +LM).

Run: python benchmarks/bench_ctc.py  [--shapes 256x26x96,32x400x96,32x400x6002] [--beams 1,4,16,64]
     [--budget 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rapidfuzz.distance import Levenshtein

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_name, results_path, write_results  # noqa: E402

from crnn_fast.data import Charset  # noqa: E402
from crnn_fast.decoding import CharNgramLM, CTCDecoder  # noqa: E402
from crnn_fast.formats.lm import kneser_ney, write_arpa  # noqa: E402

OURS = "crnn_fast"
PRUNED = "crnn_fast pruned"
PRUNING = dict(beam_threshold=10.0, token_min_logp=-5.0)  # pyctcdecode's defaults (see the docstring)
PEERS = ("pyctcdecode", "fast-ctc-decode", "flashlight-text")


# ---------------------------------------------------------------------------------------------------------
# synthetic language and recognizer output
# ---------------------------------------------------------------------------------------------------------


class Language:
    """A vocabulary with Zipf frequencies over a charset; sentences are words joined by single spaces."""

    def __init__(self, charset: Charset, words: list[str], seed: int) -> None:
        self.charset = charset
        self.words = words
        rng = random.Random(seed)
        rng.shuffle(self.words)
        self.cum_weights = list(itertools.accumulate(1.0 / (r + 1) ** 1.1 for r in range(len(words))))
        self.rng = rng

    def word(self, max_len: int | None = None) -> str:
        while True:
            w = self.rng.choices(self.words, cum_weights=self.cum_weights)[0]
            if max_len is None or len(w) <= max_len:
                return w

    def sentence(self, n_words: int) -> str:
        return " ".join(self.word() for _ in range(n_words))


def english_language(seed: int) -> Language:
    charset = Charset.printable_ascii()
    words: list[str] = []
    dictionary = Path("/usr/share/dict/words")
    if dictionary.exists():
        words = sorted({w.strip() for w in dictionary.read_text(errors="ignore").splitlines()
                        if w.strip().isascii() and w.strip().isalpha() and 2 <= len(w.strip()) <= 10})
    rng = random.Random(seed)
    if len(words) < 5000:  # no word list installed: pronounceable made-up words
        cons, vows = "bcdfghjklmnprstvwz", "aeiou"
        words = sorted({"".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(1, 4)))
                        for _ in range(30000)})
    words = rng.sample(words, min(20000, len(words)))
    return Language(charset, words, seed)


def cjk_language(seed: int) -> Language:
    chars = [chr(0x4E00 + i) for i in range(6000)]
    charset = Charset("".join(chars) + " ")
    rng = random.Random(seed)
    cum = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(chars))))
    words: set[str] = set()
    while len(words) < 20000:
        words.add("".join(rng.choices(chars, cum_weights=cum, k=rng.randint(1, 4))))
    return Language(charset, sorted(words), seed)


NOISE, PEAK, CONFUSION = 1.0, (4.0, 12.0), 0.08


def synthetic_batch(lang: Language, B: int, T: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """(B, T, C) float32 log-probs and the B texts their best paths spell."""
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    C = lang.charset.num_classes
    logits = NOISE * torch.randn(B, T, C, generator=g)
    texts = []
    for b in range(B):
        # Frames: each character 1-2, then 0-2 blanks (at least 1 before a repeated character).
        path: list[int] = []
        text = ""
        while True:
            word = lang.word(max_len=max(1, T // 3)) if T < 60 else lang.word()
            candidate = (text + " " + word) if text else word
            frames: list[int] = []
            prev = None
            for c in lang.charset.encode(candidate):
                if c == prev:
                    frames.append(0)
                frames += [c] * rng.randint(1, 2) + [0] * rng.randint(0, 2)
                prev = c
            if len(frames) > T:
                break
            text, path = candidate, frames
            if T < 60:  # an OCR crop: one word
                break
        path += [0] * (T - len(path))
        texts.append(text)
        idx = torch.tensor(path)
        # The same margin over the background's total mass whatever C: + log(C / 96).
        peak = PEAK[0] + (PEAK[1] - PEAK[0]) * torch.rand(T, generator=g) + math.log(C / 96)
        logits[b, torch.arange(T), idx] += peak
        confused = (torch.rand(T, generator=g) < CONFUSION) & (idx != 0)
        other = torch.randint(1, C, (T,), generator=g)
        close = peak - 2.5 * torch.rand(T, generator=g)
        rows = torch.nonzero(confused).flatten()
        logits[b, rows, other[rows]] += close[rows]
    return logits.log_softmax(-1), texts


# ---------------------------------------------------------------------------------------------------------
# decoders
# ---------------------------------------------------------------------------------------------------------


def time_ours(decoder: CTCDecoder, lp: torch.Tensor, threads: int, min_s: float = 0.4):
    """Median seconds per batch over repeats (after a warm-up: at least 2, 3 when fast, until min_s), and the
    top texts."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = decoder.decode(lp)  # warm-up
        times = []
        start = time.perf_counter()
        while len(times) < 2 or (len(times) < 3 and times[0] < 1.0) or (
                time.perf_counter() - start < min_s and len(times) < 50):
            t = time.perf_counter()
            decoder.decode(lp)
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(old)
    return statistics.median(times), [h[0].text if h else "" for h in out]


def time_peer(decode_one, B: int, budget: float):
    """Seconds per sequence over as many sequences as fit in `budget` (at least one), and their texts."""
    texts = []
    start = time.perf_counter()
    for b in range(B):
        texts.append(decode_one(b))
        if time.perf_counter() - start > budget:
            break
    return (time.perf_counter() - start) / len(texts), texts


def time_peer_isolated(decode_one, B: int, budget: float, timeout: float, extra_memory_gb: float = 6.0):
    """time_peer in a forked child with a memory cap and a time limit: a peer that blows up (fast-ctc-decode
    at C 6,002 can take all memory) or crawls cannot take the benchmark with it. Returns (s/seq, texts) or
    (None, reason)."""
    ctx = mp.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)

    def child():
        page = os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * page
        limit = size + int(extra_memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            sender.send(time_peer(decode_one, B, budget))
        except BaseException as exc:  # MemoryError and the like: report, do not hang the parent
            sender.send((None, f"{type(exc).__name__}: {exc}"[:200]))

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    if receiver.poll(timeout):
        try:
            result = receiver.recv()
        except EOFError:
            result = (None, "crashed")
    else:
        result = (None, f"no sequence decoded in {timeout:.0f}s")
    proc.join(1.0)
    if proc.is_alive():
        proc.kill()
        proc.join()
    elif result[0] is None and proc.exitcode not in (0, None) and result[1] == "crashed":
        result = (None, f"crashed (exit code {proc.exitcode})")
    return result


def make_pyctcdecode(labels, arpa=None, unigrams=None):
    import pyctcdecode

    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    if arpa is None:
        return pyctcdecode.build_ctcdecoder(labels)
    return pyctcdecode.build_ctcdecoder(labels, kenlm_model_path=str(arpa), unigrams=unigrams, alpha=0.5, beta=1.0)


def peer_decoders(lang: Language, lp: torch.Tensor, K: int, arpa_words: Path | None):
    """name -> decode_one(b) for the peers that are installed."""
    C = lang.charset.num_classes
    chars = list(lang.charset.characters)
    out = {}
    np_lp = lp.numpy()
    try:
        import fast_ctc_decode

        probs = lp.exp().numpy()
        alphabet = ["N"] + chars

        def fast_one(b):
            return fast_ctc_decode.beam_search(probs[b], alphabet, beam_size=K, beam_cut_threshold=0.5 / C)[0]

        out["fast-ctc-decode"] = fast_one
    except ImportError:
        pass
    try:
        from flashlight.lib.text.decoder import (
            CriterionType,
            LexiconFreeDecoder,
            LexiconFreeDecoderOptions,
            ZeroLM,
        )

        opts = LexiconFreeDecoderOptions(beam_size=K, beam_size_token=C, beam_threshold=1000.0, lm_weight=0.0,
                                         sil_score=0.0, log_add=True, criterion_type=CriterionType.CTC)
        sil = lang.charset.space if lang.charset.space is not None else 1
        fl = LexiconFreeDecoder(opts, ZeroLM(), sil, 0, [])
        contiguous = lp.contiguous()
        T = lp.shape[1]

        def flashlight_one(b):
            tokens = fl.decode(contiguous[b].data_ptr(), T, C)[0].tokens[1:-1]  # without its start/end sil
            ids, prev = [], None
            for k in tokens:
                if k != prev and k != 0 and 0 < k < C:
                    ids.append(k)
                prev = k
            return "".join(chars[k - 1] for k in ids)

        out["flashlight-text"] = flashlight_one
    except ImportError:
        pass
    try:
        labels = [""] + chars
        plain = make_pyctcdecode(labels)
        out["pyctcdecode"] = lambda b: plain.decode(np_lp[b], beam_width=K)
        if arpa_words is not None:
            try:
                with_lm = make_pyctcdecode(labels, arpa_words, lang.words)
                out["pyctcdecode +LM"] = lambda b: with_lm.decode(np_lp[b], beam_width=K)
            except ImportError:  # pyctcdecode without kenlm
                pass
    except ImportError:
        pass
    return out


def ctc_logp(lp: torch.Tensor, texts: list[str], charset: Charset) -> torch.Tensor:
    """(n,) float64 log P(text | lp) (CTC forward algorithm, F.ctc_loss)."""
    targets, lengths = charset.encode_batch(texts)
    n, T, _ = lp.shape
    return -F.ctc_loss(lp.double().transpose(0, 1), targets, torch.full((n,), T), lengths, blank=0,
                       reduction="none", zero_infinity=False)


# ---------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------


def parse_shapes(text: str):
    shapes = []
    for part in text.split(","):
        B, T, C = (int(x) for x in part.lower().split("x"))
        if C not in (96, 6002):
            raise SystemExit(f"--shapes: C must be 96 (printable ASCII) or 6002 (CJK + space), got {C}")
        shapes.append((B, T, C))
    return shapes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="256x26x96,32x400x96,32x400x6002", help="BxTxC, comma separated")
    p.add_argument("--beams", default="1,4,16,64")
    p.add_argument("--budget", type=float, default=3.0, help="seconds per peer and cell (at least 1 sequence)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="a peer that has not finished its first sequence budget + this many seconds in is stopped")
    p.add_argument("--lm-sentences", type=int, default=4000)
    p.add_argument("--lm-order", type=int, default=5)
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    shapes = parse_shapes(args.shapes)
    beams = [int(x) for x in args.beams.split(",")]
    device = device_name()
    path = results_path("bench_ctc", device, args.out)
    print(f"device: {device}, torch {torch.__version__}, {torch.get_num_threads()} threads available", flush=True)
    rows: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_ctc_"))
    langs: dict = {}
    run_start = time.perf_counter()
    for B, T, C in shapes:
        if C not in langs:
            t0 = time.perf_counter()
            lang = english_language(args.seed) if C == 96 else cjk_language(args.seed)
            sentences = [lang.sentence(lang.rng.randint(4, 16)) for _ in range(args.lm_sentences)]
            char_lm = CharNgramLM.from_text(sentences, args.lm_order)
            vocab, grams = kneser_ney([s.split(" ") for s in sentences], 3)
            arpa = tmp / f"words-{C}.arpa"
            write_arpa(str(arpa), 3, vocab, grams)
            langs[C] = (lang, char_lm, arpa)
            print(f"C={C}: {len(lang.words)} words, char LM {char_lm}, word 3-gram {len(grams)} n-grams "
                  f"({time.perf_counter() - t0:.1f}s)", flush=True)
        lang, char_lm, arpa = langs[C]
        lp, truth = synthetic_batch(lang, B, T, seed=args.seed + B + T + C)
        for K in beams:
            cell = {"B": B, "T": T, "C": C, "beam_width": K, "dtype": "float32"}
            results: dict[tuple[str, str], tuple[float, list[str]]] = {}  # (mode, impl) -> (s/seq, texts)
            configs = {
                "none": {},
                "lexicon": dict(lexicon=lang.words),
                "lm": dict(lm=char_lm, lm_weight=0.5, insertion_bonus=1.0),
                "lexicon+lm": dict(lexicon=lang.words, lm=char_lm, lm_weight=0.5, insertion_bonus=1.0),
            }
            for mode, extra in configs.items():
                decoder = CTCDecoder(lang.charset, beam_width=K, **extra)
                threads = (1, 2) if mode != "lexicon+lm" else (1,)
                for n in threads:
                    s, texts = time_ours(decoder, lp, n)
                    results[(mode, OURS if n == 1 else f"{OURS} (2 threads)")] = (s / B, texts)
                if K > 1:
                    pruned = CTCDecoder(lang.charset, beam_width=K, **PRUNING, **extra)
                    s, texts = time_ours(pruned, lp, 1)
                    results[(mode, PRUNED)] = (s / B, texts)
            failed: dict[tuple[str, str], str] = {}
            for name, fn in peer_decoders(lang, lp, K, arpa).items():
                mode = "lm" if name.endswith("+LM") else "none"
                s_per_seq, texts = time_peer_isolated(fn, B, args.budget, timeout=args.budget + args.timeout)
                if s_per_seq is None:
                    failed[(mode, name.replace(" +LM", ""))] = texts
                else:
                    results[(mode, name.replace(" +LM", ""))] = (s_per_seq, texts)
            for (mode, impl), reason in failed.items():
                # No sequence within the limit: throughput below 1 / limit; the row says why.
                rows.append(dict(impl=impl, mode=mode, **cell, sequences=0, median_ms=None, seq_per_s=None,
                                 agreement=None, exact=None, cer=None, delta_logp=None, failed=reason))
            for (mode, impl), (s_per_seq, texts) in results.items():
                base = results[(mode, OURS)][1]
                n = len(texts)
                delta = ctc_logp(lp[:n], texts, lang.charset) - ctc_logp(lp[:n], base[:n], lang.charset)
                rows.append(dict(impl=impl, mode=mode, **cell, sequences=n, median_ms=1e3 * s_per_seq * B,
                                 seq_per_s=1.0 / s_per_seq,
                                 agreement=sum(a.strip() == b.strip() for a, b in zip(texts, base)) / n,
                                 exact=sum(a.strip() == b.strip() for a, b in zip(texts, truth)) / n,
                                 cer=Levenshtein.distance("\n".join(texts), "\n".join(truth[:n]))
                                 / max(1, sum(len(t) for t in truth[:n])),
                                 delta_logp=float(delta.mean())))
            write_results(path, "ctc", rows, shapes=args.shapes, beams=args.beams, budget_s=args.budget,
                          notes=__doc__)
            print_cell(rows[-(len(results) + len(failed)):], flush=True)
    print_summary(rows)
    print(f"\nwrote {path} ({time.perf_counter() - run_start:.0f}s)")


def print_cell(cell_rows: list[dict], flush: bool = False) -> None:
    r0 = cell_rows[0]
    head = f"B={r0['B']} T={r0['T']} C={r0['C']} beam={r0['beam_width']}"
    ours = {r["mode"]: r["seq_per_s"] for r in cell_rows if r["impl"] == OURS}
    print(f"\n{head}")
    print(f"  {'mode':<11} {'impl':<24} {'seq/s':>10} {'ours 1t / this':>15} {'agree':>7} {'exact':>7} "
          f"{'CER':>7} {'dlogP':>8} {'n':>5}")
    for r in cell_rows:
        if r.get("failed"):
            print(f"  {r['mode']:<11} {r['impl']:<24} {'-':>10} {'-':>15}  failed: {r['failed']}", flush=flush)
    for r in sorted((r for r in cell_rows if not r.get("failed")),
                    key=lambda r: (["none", "lexicon", "lm", "lexicon+lm"].index(r["mode"]), -r["seq_per_s"])):
        ref = ours.get(r["mode"])
        ratio = f"{ref / r['seq_per_s']:.1f}x" if ref else "-"
        print(f"  {r['mode']:<11} {r['impl']:<24} {r['seq_per_s']:>10.1f} {ratio:>15} {r['agreement']:>7.1%} "
              f"{r['exact']:>7.1%} {r['cer']:>7.2%} {r['delta_logp']:>8.3f} {r['sequences']:>5}", flush=flush)


def print_summary(rows: list[dict]) -> None:
    """The issue's targets, cell by cell."""
    print("\nTargets (1 thread; exact = crnn_fast without pruning, pruned = crnn_fast pruned, "
          f"{', '.join(f'{k}={v}' for k, v in PRUNING.items())}):")
    cells = sorted({(r["B"], r["T"], r["C"], r["beam_width"]) for r in rows})
    for B, T, C, K in cells:
        here = [r for r in rows if (r["B"], r["T"], r["C"], r["beam_width"]) == (B, T, C, K)]
        get = {(r["mode"], r["impl"]): r["seq_per_s"] for r in here}
        agree = {(r["mode"], r["impl"]): r["agreement"] for r in here}
        peers = {r["impl"]: r["seq_per_s"] for r in here
                 if r["mode"] == "none" and r["impl"] in PEERS and r["seq_per_s"] is not None}
        line = f"  B={B} T={T} C={C} beam={K}: "
        if get.get(("none", OURS)) and peers:
            best_name, best = max(peers.items(), key=lambda kv: kv[1])
            line += f"fastest peer {best_name} {best:.1f}/s"
            for impl, label in ((OURS, "exact"), (PRUNED, "pruned")):
                v = get.get(("none", impl))
                if v:
                    tag = "MET" if v >= 2 * best else ("n/a (beam 1)" if K < 4 else "NOT MET")
                    line += f", {label} {v / best:.1f}x [>= 2x: {tag}]"
        pylm = get.get(("lm", "pyctcdecode"))
        if pylm:
            for mode in ("lexicon", "lm", "lexicon+lm"):
                parts = []
                for impl, label in ((OURS, "exact"), (PRUNED, "pruned")):
                    v = get.get((mode, impl))
                    if v:
                        extra = f" agree {agree[(mode, impl)]:.0%}" if impl == PRUNED else ""
                        parts.append(f"{label} {v / pylm:.1f}x [{'MET' if v >= 10 * pylm else 'NOT MET'}]{extra}")
                if parts:
                    line += f"\n      {mode} vs pyctcdecode+LM: " + ", ".join(parts)
        print(line)


if __name__ == "__main__":
    if os.environ.get("OMP_NUM_THREADS") is None:
        os.environ["OMP_NUM_THREADS"] = "2"
    main()
