"""`crnn-fast`: recognize | eval | train | export | render.

    crnn-fast recognize PATHS...   files, folders (searched recursively for images), tar shards and globs,
                                   streamed; prints path<TAB>text<TAB>confidence per image (or JSON lines
                                   with --json) and images/s at the end on stderr; a failed item prints
                                   its error on stderr and the exit code is 1
    crnn-fast recognize --ray ...  the same on a Ray cluster (Ray Data), results to Parquet/JSONL:
                                   see crnn_fast.integrations.ray (pip install "crnn_fast[ray]")
    crnn-fast eval DATA            a folder with labels.tsv or an LMDB: exact match, alnum accuracy, CER
    crnn-fast train                flags or --config FILE (JSON of crnn_fast.train.TrainConfig fields)
    crnn-fast export RUN_DIR OUT   a training run's best checkpoint -> OUT.safetensors + OUT.json
    crnn-fast export-onnx OUT.onnx a model (--model, default: shipped) -> OUT.onnx + OUT.json for onnxruntime
    crnn-fast render OUT           the held-out test set (held-out fonts and words only)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

EXIT_ITEM_ERRORS = 1
EXIT_USAGE = 2


def _escape(name: str) -> str:
    """A path as one TSV field and one line whatever its bytes: backslash, tab, newline and other control
    characters as backslash escapes, bytes that are not UTF-8 (surrogate-escaped by the OS layer) as \\xNN,
    so that no file name can forge a row or stop a strict UTF-8 stdout."""
    out = []
    for ch in name:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogateescape of an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(ch, f"\\x{code:02x}" if code < 0x100
                                                                 else f"\\u{code:04x}"))
        else:
            out.append(ch)
    return "".join(out)


def _escape_text(text: str) -> str:
    """Recognised text as one TSV field: tabs and line breaks (possible with a custom charset) escaped."""
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _error(message: str) -> int:
    print(f"crnn-fast: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _beam_width(text: str) -> int:
    """--beam's type: an int in [1, MAX_BEAM_WIDTH], checked when the arguments are parsed."""
    from ._beam_checks import check_beam_width

    try:
        return check_beam_width(int(text), "--beam")
    except ValueError as e:
        message = str(e) if str(e).startswith("--beam") else f"--beam must be an int, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _tar_images(path: str) -> Iterator[tuple[str, object]]:
    """(path:member, bytes) of the image members of a tar shard (WebDataset style), read as a stream; a shard
    that cannot be read (not a tar, truncated, not a regular file) ends with one (path, ShardError) item."""
    import tarfile

    from .data.datasets import IMAGE_EXTENSIONS, ImageError, open_regular_file

    try:
        with open_regular_file(path) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_EXTENSIONS):
                    yield f"{path}:{member.name}", tar.extractfile(member).read()
    except ImageError as e:
        yield path, ShardError(f"not a readable tar shard: {e}")
    except (tarfile.TarError, OSError, EOFError) as e:
        yield path, ShardError(f"{path!r} is not a readable tar shard ({type(e).__name__}: {e})")


class ShardError(ValueError):
    """A tar shard that cannot be read (truncated or not a tar): its members before the damage are kept."""


def iter_inputs(inputs: list[str]) -> Iterator[tuple[str, object]]:
    """(name, item) for every input image (see datasets.iter_input_paths): tar shards (.tar/.tar.gz/.tgz) as their
    image members (item: the encoded bytes), everything else as its path; a path that does not exist is kept,
    so it is reported as that item's error. A shard that cannot be read gives (its path, ShardError) after the
    members read before the damage: one bad input, and the inputs after it are still read.
    Lazy: a folder of a million files is never listed in memory."""
    from .data.datasets import is_shard, iter_input_paths

    for path, found in iter_input_paths(inputs):
        if found and is_shard(path):
            yield from _tar_images(path)
        else:
            yield path, path


def _load_recognizer(args):
    from ._checks import resolve_device
    from .models.pretrained import WeightsError
    from .recognize import Recognizer

    try:
        resolve_device(args.device)
    except ValueError as e:
        raise SystemExit(_error(f"--device: {e}")) from None
    options = {}
    for name in ("precision", "preprocess", "workers", "cuda_graphs"):
        if getattr(args, name, None) is not None:
            options[name] = getattr(args, name)
    try:
        return Recognizer.from_pretrained(args.model, device=args.device, batch_size=args.batch_size,
                                          lm=not (args.no_lm or args.greedy), **options)
    except (FileNotFoundError, WeightsError, ValueError, ImportError) as e:
        raise SystemExit(_error(f"cannot load model {args.model or '(default)'}: {e}")) from None


def _build_decoder(recognizer, beam, lexicon, greedy=False) -> int | None:
    """Builds the beam / lexicon decoder once, up front, so that a bad option is one clear error (its exit
    status), not a traceback halfway through the images."""
    if lexicon is not None and not os.path.isfile(lexicon):
        return _error(f"--lexicon {lexicon!r}: no such file")
    try:
        recognizer.decoder(beam, lexicon, greedy)
    except (ValueError, OSError) as e:
        return _error(str(e))
    return None


def cmd_recognize(args) -> int:
    import time

    from tqdm import tqdm

    recognizer = _load_recognizer(args)
    lexicon = args.lexicon
    error = _build_decoder(recognizer, args.beam, lexicon, args.greedy)
    if error is not None:
        return error
    # (name, error) per input in input order; error is set for an input the recognizer never sees (a shard that
    # cannot be read). Results come back in the order of the items handed over.
    pending: collections.deque[tuple[str, str | None]] = collections.deque()

    def items():
        for name, item in iter_inputs(args.paths):
            if isinstance(item, ShardError):
                pending.append((name, str(item)))
            else:
                pending.append((name, None))
                yield item

    bar = tqdm(unit="img", file=sys.stderr, disable=args.no_progress, desc="recognize", mininterval=0.5,
               delay=1.0)  # appears only for runs longer than a second
    failed = total = 0

    def report(name: str, text: str | None, confidence: float | None, error: str | None) -> None:
        nonlocal failed, total
        total += 1
        if error is not None:
            failed += 1
            print(f"{_escape(name)}: error: {error}", file=sys.stderr)
            if args.json:
                print(json.dumps({"path": name, "text": None, "confidence": None, "error": error}))
        elif args.json:
            print(json.dumps({"path": name, "text": text, "confidence": round(confidence, 4), "error": None}))
        else:
            print(f"{_escape(name)}\t{_escape_text(text)}\t{confidence:.4f}")
        bar.update(1)

    def report_input_errors() -> None:
        while pending and pending[0][1] is not None:
            name, error = pending.popleft()
            report(name, None, None, error)

    start = time.perf_counter()
    for r in recognizer.recognize_iter(items(), beam=args.beam, lexicon=lexicon, greedy=args.greedy):
        report_input_errors()
        name, _ = pending.popleft()
        report(name, r.text, r.confidence, r.error)
    report_input_errors()
    bar.close()
    elapsed = time.perf_counter() - start
    if total == 0:
        return _error("no input images")
    if not args.quiet:
        print(f"crnn-fast: {total} images in {elapsed:.2f} s ({total / elapsed:.1f} images/s) on "
              f"{recognizer.device}", file=sys.stderr)
    if failed:
        print(f"crnn-fast: {failed} of {total} images failed", file=sys.stderr)
        return EXIT_ITEM_ERRORS
    return 0


def cmd_eval(args) -> int:
    from .data.datasets import open_dataset
    from .evaluate import evaluate_dataset

    try:
        dataset = open_dataset(args.data)
    except (FileNotFoundError, ValueError) as e:
        return _error(str(e))
    recognizer = _load_recognizer(args)
    error = _build_decoder(recognizer, args.beam, args.lexicon, args.greedy)
    if error is not None:
        return error
    metrics, rows = evaluate_dataset(recognizer, dataset, batch_size=args.batch_size, beam=args.beam,
                                     lexicon=args.lexicon, progress=not args.no_progress, limit=args.limit,
                                     greedy=args.greedy)
    m = metrics.as_dict()
    print(f"{args.data}: n={m['n']} exact={m['exact']:.4f} alnum={m['alnum']:.4f} cer={m['cer']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"data": args.data, "metrics": m, "rows": rows}, indent=1))
    errors = sum(1 for r in rows if r["error"])
    if errors:
        print(f"crnn-fast: {errors} unreadable samples (scored as wrong)", file=sys.stderr)
    return 0


def cmd_train(args) -> int:
    from .train import TrainConfig, export, train

    overrides = {k: getattr(args, k) for k in ("out_dir", "variant", "steps", "batch_size", "lr", "device",
                                               "threads", "num_workers", "seed", "train_data", "time_budget_s",
                                               "val_every", "ckpt_every", "schedule", "init_from")}
    if args.amp:
        overrides["amp"] = True
    if args.no_progress:
        overrides["progress"] = False
    try:
        if args.config:
            config = TrainConfig.from_file(args.config, **overrides)
        else:
            config = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
        record = train(config, resume=not args.no_resume)
    except (ValueError, FileNotFoundError) as e:
        return _error(str(e))
    from .distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 alone reports and exports
        return 0
    print(json.dumps(record))
    if args.export:
        print("exported", *export(config.out_dir, args.export))
    return 0


def cmd_export(args) -> int:
    from .train import export

    try:
        paths = export(args.run_dir, args.out, checkpoint=args.checkpoint, half=args.half)
    except (FileNotFoundError, ValueError) as e:
        return _error(str(e))
    print(*paths)
    return 0


def cmd_export_onnx(args) -> int:
    from .models.onnx import export_onnx
    from .models.pretrained import WeightsError, load_pretrained

    try:
        model, charset, meta = load_pretrained(args.model)
    except (FileNotFoundError, WeightsError) as e:
        return _error(f"cannot load model {args.model or '(default)'}: {e}")
    try:
        paths = export_onnx(model, args.out, charset=charset, opset=args.opset, half=args.half,
                            training=meta.get("training"))
    except (ValueError, ImportError, OSError) as e:
        return _error(str(e))
    print(*paths)
    return 0


def cmd_render(args) -> int:
    from .data.datasets import write_folder
    from .data.synth import HELDOUT_SUBSETS, render_heldout

    subsets = args.subset or list(HELDOUT_SUBSETS)
    for subset in subsets:
        items = render_heldout(subset, args.n, seed=args.seed)
        folder = write_folder(Path(args.out) / subset, items)
        print(f"{folder}: {len(items)} images")
    return 0


def _version() -> str:
    import torch  # already imported by the crnn_fast package this module is in

    from . import __version__, _ext

    built = "built" if _ext.HAS_EXTENSION else f"not built ({_ext.EXTENSION_ERROR})"
    return f"crnn-fast {__version__} (torch {torch.__version__}; compiled extension crnn_fast._C: {built})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crnn-fast", description="Fast CRNN text recognition")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p):
        p.add_argument("--model", default=None, help="shipped model name or a .safetensors / .onnx path")
        p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument("--beam", type=_beam_width, default=None, help="beam search with this beam width (1-4096)")
        p.add_argument("--lexicon", default=None, help="file of allowed words, one per line")
        p.add_argument("--greedy", action="store_true",
                       help="best-path decoding: no beam search, no language model (the model's default otherwise)")
        p.add_argument("--no-lm", action="store_true", help="ignore the language model shipped with the model")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("recognize", help="recognise text in image files, folders, tar shards or globs")
    p.add_argument("paths", nargs="+", help="image files, folders (recursive), .tar/.tar.gz shards, globs")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--precision", default=None, choices=["fp32", "fp16", "bf16"],
                   help="autocast dtype of the network (default fp32)")
    p.add_argument("--preprocess", default=None, choices=["auto", "host", "device"],
                   help="resize on the CPU (host) or on the device (default: device on CUDA)")
    p.add_argument("--workers", type=int, default=None, help="image decoding threads")
    p.add_argument("--cuda-graphs", action="store_true", default=None, help="replay the network from CUDA graphs")
    p.add_argument("-q", "--quiet", action="store_true", help="no images/s summary on stderr")
    p.add_argument("--ray", action="store_true",
                   help="run on a Ray cluster instead (options: crnn-fast recognize --ray --help)")
    model_args(p)
    p.set_defaults(func=cmd_recognize)

    p = sub.add_parser("eval", help="accuracy on a labels.tsv folder or an LMDB")
    p.add_argument("data")
    p.add_argument("--json", default=None, help="write metrics and per-sample rows to this file")
    p.add_argument("--limit", type=int, default=None)
    model_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train a CRNN (synthetic data unless --train-data)",
                       description="Train a CRNN with CTC. Synthetic data needs the fonts and text corpus that "
                                   "scripts/install_training_data.sh installs (Debian packages; run it as root).")
    p.add_argument("--config", default=None, help="JSON file of TrainConfig fields (flags override it)")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--variant", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--time-budget-s", type=float, default=None, help="train for this wall time instead")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--schedule", default=None, choices=["onecycle", "cosine", "constant"])
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CPU, fp16 on CUDA")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--num-workers", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--train-data", default=None, help="labels.tsv folder or LMDB instead of synthetic data")
    p.add_argument("--val-every", type=int, default=None)
    p.add_argument("--ckpt-every", type=int, default=None)
    p.add_argument("--init-from", default=None,
                   help="start from these weights (run .pt, model name or .safetensors) with a fresh optimizer")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT_DIR/last.pt exists")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--export", default=None, help="export the best model here when done")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export a run's checkpoint to safetensors + JSON")
    p.add_argument("run_dir")
    p.add_argument("out")
    p.add_argument("--checkpoint", default="best.pt")
    p.add_argument("--half", action="store_true", help="store float16 weights")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("export-onnx", help="export a model to ONNX (+ JSON sidecar) for onnxruntime")
    p.add_argument("out", help="the .onnx file to write; its sidecar goes beside it (.json)")
    p.add_argument("--model", default=None, help="shipped model name or .safetensors path (default: shipped)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 13 to 20 (default 17)")
    p.add_argument("--half", action="store_true", help="float16 weights and activations (I/O stays float32)")
    p.set_defaults(func=cmd_export_onnx)

    p = sub.add_parser("render", help="render the held-out test set (PNG + labels.tsv per subset)")
    p.add_argument("out")
    p.add_argument("-n", type=int, default=200, help="images per subset")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--subset", action="append", default=None)
    p.set_defaults(func=cmd_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["recognize"] and "--ray" in argv:  # the same job on a Ray cluster: its own options
        from .integrations.ray import main as ray_main

        argv.remove("--ray")
        return ray_main(argv[1:], prog="crnn-fast recognize --ray")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `crnn-fast recognize ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
