"""`crnn-fast`: recognize | eval | train | export | render.

    crnn-fast recognize PATHS...   files, folders (searched recursively for images) and globs; prints
                                   path<TAB>text<TAB>confidence per image (or JSON lines with --json);
                                   a failed item prints its error on stderr and the exit code is 1
    crnn-fast eval DATA            a folder with labels.tsv or an LMDB: exact match, alnum accuracy, CER
    crnn-fast train                flags or --config FILE (JSON of crnn_fast.train.TrainConfig fields)
    crnn-fast export RUN_DIR OUT   a training run's best checkpoint -> OUT.safetensors + OUT.json
    crnn-fast render OUT           the held-out test set (held-out fonts and words only)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

EXIT_ITEM_ERRORS = 1
EXIT_USAGE = 2


def _error(message: str) -> int:
    print(f"crnn-fast: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files as given, folders as their image files (recursive, sorted), globs expanded. A path that is
    neither an existing file/folder nor a glob matching something is kept, so it is reported as an error."""
    from .data.datasets import IMAGE_EXTENSIONS

    out: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = []
            for dirpath, _, files in os.walk(item):
                found += [os.path.join(dirpath, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
            out += sorted(found)
        elif os.path.exists(item):
            out.append(item)
        elif glob.has_magic(item):
            matches = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            out += matches if matches else [item]
        else:
            out.append(item)
    return out


def _load_recognizer(args):
    from .models.pretrained import WeightsError
    from .recognize import Recognizer

    try:
        return Recognizer.from_pretrained(args.model, device=args.device, batch_size=args.batch_size)
    except (FileNotFoundError, WeightsError, ValueError) as e:
        raise SystemExit(_error(f"cannot load model {args.model or '(default)'}: {e}")) from None


def cmd_recognize(args) -> int:
    paths = expand_inputs(args.paths)
    if not paths:
        return _error("no input images")
    recognizer = _load_recognizer(args)
    lexicon = args.lexicon
    if lexicon is not None and not os.path.isfile(lexicon):
        return _error(f"--lexicon {lexicon!r}: no such file")
    try:  # build the beam / lexicon decoder once, up front: a bad option is one clear error
        recognizer._decoder(args.beam, lexicon)
    except (NotImplementedError, ValueError, OSError) as e:
        return _error(str(e))
    from tqdm import tqdm

    show_bar = not args.no_progress and len(paths) > args.progress_threshold
    bar = tqdm(total=len(paths), unit="img", file=sys.stderr, disable=not show_bar, desc="recognize")
    failed = 0
    chunk = max(args.batch_size * 4, 256)  # stream results: bounded memory for a million files
    for lo in range(0, len(paths), chunk):
        part = paths[lo: lo + chunk]
        try:
            results = recognizer.recognize(part, batch_size=args.batch_size, beam=args.beam, lexicon=lexicon)
        except NotImplementedError as e:
            bar.close()
            return _error(str(e))
        for path, r in zip(part, results):
            if r.error is not None:
                failed += 1
                print(f"{path}: error: {r.error}", file=sys.stderr)
                if args.json:
                    print(json.dumps({"path": path, "text": None, "confidence": None, "error": r.error}))
            elif args.json:
                print(json.dumps({"path": path, "text": r.text, "confidence": round(r.confidence, 4),
                                  "error": None}))
            else:
                print(f"{path}\t{r.text}\t{r.confidence:.4f}")
        sys.stdout.flush()
        bar.update(len(part))
    bar.close()
    if failed:
        print(f"crnn-fast: {failed} of {len(paths)} images failed", file=sys.stderr)
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
    try:
        metrics, rows = evaluate_dataset(recognizer, dataset, batch_size=args.batch_size, beam=args.beam,
                                         lexicon=args.lexicon, progress=not args.no_progress, limit=args.limit)
    except NotImplementedError as e:
        return _error(str(e))
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
    print(json.dumps(record))
    if args.export:
        print("exported", *export(config.out_dir, args.export))
    return 0


def cmd_export(args) -> int:
    from .train import export

    try:
        paths = export(args.run_dir, args.out, checkpoint=args.checkpoint, half=args.half)
    except FileNotFoundError as e:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crnn-fast", description="Fast CRNN text recognition")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p):
        p.add_argument("--model", default=None, help="shipped model name or .safetensors path (default: shipped)")
        p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument("--beam", type=int, default=None, help="beam search with this beam width")
        p.add_argument("--lexicon", default=None, help="file of allowed words, one per line")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("recognize", help="recognise text in image files, folders or globs")
    p.add_argument("paths", nargs="+")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--progress-threshold", type=int, default=100, help="show a bar for more images than this")
    model_args(p)
    p.set_defaults(func=cmd_recognize)

    p = sub.add_parser("eval", help="accuracy on a labels.tsv folder or an LMDB")
    p.add_argument("data")
    p.add_argument("--json", default=None, help="write metrics and per-sample rows to this file")
    p.add_argument("--limit", type=int, default=None)
    model_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train a CRNN (synthetic data unless --train-data)")
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

    p = sub.add_parser("render", help="render the held-out test set (PNG + labels.tsv per subset)")
    p.add_argument("out")
    p.add_argument("-n", type=int, default=200, help="images per subset")
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--subset", action="append", default=None)
    p.set_defaults(func=cmd_render)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `crnn-fast recognize ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
