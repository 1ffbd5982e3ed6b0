"""Batch recognition on Ray Data: one model per actor, images streamed through `Dataset.map_batches`.

Needs the `ray` extra: pip install "crnn_fast[ray]". Ray is imported only inside the functions and the class
below, so `import crnn_fast` (and importing this module) works without it.

In your own pipeline (batch_format="numpy": a dict of numpy arrays; pandas DataFrames work too):

    import ray
    from crnn_fast.integrations.ray import RayRecognizer

    ds = ray.data.read_binary_files("crops/", include_paths=True)          # columns: bytes, path
    out = ds.map_batches(RayRecognizer, fn_constructor_kwargs={"batch_size": 64}, batch_size=512,
                         batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=4))
    # -> columns: path, text, confidence, error (one row per image; a bad image has its error set)
    # On GPUs: fn_constructor_kwargs={"device": "cuda", ...}, num_gpus=1 (one GPU per actor) and
    # ActorPoolStrategy(size=<number of GPUs>). `concurrency=4` instead of `compute=` also works, but Ray
    # 2.51+ marks it deprecated.

From the command line (files, folders, globs and WebDataset tar shards in; Parquet or JSON lines out):

    python -m crnn_fast.integrations.ray crops/ 'more/**/*.jpg' shards/*.tar --output results.parquet

Input columns: the image in `bytes` (encoded image bytes, as read_binary_files gives) or `image` (decoded arrays:
(H, W), (H, W, 1|3|4), uint8/uint16/float, as Recognizer.recognize takes them), and an id in `path` or `id`
(Ray does not keep row order, so results are matched to inputs by id). Other columns pass through unchanged.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import is_positive_int
from ..data.datasets import IMAGE_EXTENSIONS, is_shard, iter_input_paths

IMAGE_COLUMNS = ("bytes", "image")
ID_COLUMNS = ("path", "id")
RESULT_COLUMNS = ("text", "confidence", "error")
OUTPUT_SUFFIXES = (".parquet", ".jsonl")
# Rows per map_batches call = this many model batches: the recognizer sorts each call's images by width and
# batches neighbours, so a larger call pads less. 8 = Recognizer's default window_batches, so a call is one of the
# windows that Recognizer.recognize sorts when it runs alone.
MODEL_BATCHES_PER_CALL = 8
_IMAGE_MEMBER_SUFFIXES = tuple(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
INSTALL_HINT = 'pip install "crnn_fast[ray]"'


def import_ray():
    """`import ray` and `ray.data`, or an ImportError that says how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library is a separate import and needs pyarrow/pandas)
    except ImportError as e:
        raise ImportError(f"crnn_fast.integrations.ray needs Ray Data, which is not installed here ({e}); "
                          f"install it with: {INSTALL_HINT}") from None
    return ray


# -- the callable class ----------------------------------------------------------------------------------


class RayRecognizer:
    """A callable class for `ray.data.Dataset.map_batches`: loads the model once per actor, then recognises
    every batch it is given.

    model: shipped model name or .safetensors path (None: the shipped default), as Recognizer.from_pretrained.
    device: "auto" (CUDA if the actor has a GPU), "cpu", "cuda". On GPUs pass device="cuda" together with
        map_batches(..., num_gpus=1): an actor that was given no GPU then fails loudly instead of running on the CPU.
    batch_size: images per forward pass (pass map_batches a batch_size of a few times this: each call's images are
        sorted by width before batching, so bigger calls pad less).
    beam, lexicon: as Recognizer.recognize (beam width; a word list, or a path to a file of words on every node).
    num_threads: torch CPU threads in this actor; None keeps torch's default, which under Ray is the actor's
        num_cpus (Ray sets OMP_NUM_THREADS to it; 1 by default).
    image_column, id_column: column names; None picks the first present of IMAGE_COLUMNS / ID_COLUMNS.
    recognizer_options: further Recognizer options (precision="fp16", preprocess, workers, window_batches,
        cuda_graphs: see crnn_fast.Recognizer).

    __call__(batch) takes a dict of numpy arrays (batch_format="numpy") or a pandas DataFrame and returns the same
    kind: every input column but the image one, plus text (str), confidence (float) and error (None, or why the
    image could not be read: then text is "" and confidence 0.0). One bad image never fails the batch.
    """

    def __init__(self, model: str | os.PathLike | None = None, *, device: str = "auto", batch_size: int = 64,
                 beam: int | None = None, lexicon: Iterable[str] | str | os.PathLike | None = None,
                 num_threads: int | None = None, image_column: str | None = None, id_column: str | None = None,
                 **recognizer_options):
        import torch

        from ..recognize import Recognizer

        if num_threads is not None:
            if not is_positive_int(num_threads):
                raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
            torch.set_num_threads(num_threads)
        for name, value in (("image_column", image_column), ("id_column", id_column)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a column name (str) or None, got {type(value).__name__}")
        self.recognizer = Recognizer.from_pretrained(model, device=device, batch_size=batch_size, **recognizer_options)
        self.beam = beam
        # The recognizer caches its beam decoder per lexicon object: keep one object for every call.
        self.lexicon = lexicon if lexicon is None or isinstance(lexicon, (str, os.PathLike)) else list(lexicon)
        self.image_column = image_column
        self.id_column = id_column
        # Build the beam / lexicon decoder now, so a bad option fails the actor's start, not every batch.
        self.recognizer.recognize([], beam=self.beam, lexicon=self.lexicon)

    def __call__(self, batch):
        as_frame = not isinstance(batch, dict)
        if as_frame:
            if not hasattr(batch, "columns"):
                raise TypeError("RayRecognizer takes a dict of numpy arrays (map_batches batch_format='numpy') or a "
                                f"pandas DataFrame (batch_format='pandas'), got {type(batch).__name__}")
            columns = {name: batch[name].to_numpy() for name in batch.columns}
        else:
            columns = batch
        image_column = _pick_column(columns, self.image_column, IMAGE_COLUMNS, "image_column")
        _pick_column(columns, self.id_column, ID_COLUMNS, "id_column")
        images = columns[image_column]
        n = len(images)
        texts: list[str] = [""] * n
        confidences = np.zeros(n, dtype=np.float64)
        errors: list[str | None] = [None] * n
        present = []
        for i in range(n):
            if _is_missing(images[i]):
                errors[i] = f"no image in column {image_column!r} (e.g. a tar sample without an image member)"
            else:
                present.append(i)
        results = self.recognizer.recognize([images[i] for i in present], beam=self.beam, lexicon=self.lexicon)
        for i, result in zip(present, results):
            texts[i], confidences[i], errors[i] = result.text, result.confidence, result.error
        out = {name: values for name, values in columns.items() if name != image_column}
        out["text"] = np.array(texts, dtype=object)
        out["confidence"] = confidences
        out["error"] = np.array(errors, dtype=object)
        if as_frame:
            import pandas as pd

            # dtype=object keeps None as None (pandas 3 would infer its str dtype and turn None into NaN).
            return pd.DataFrame({name: pd.Series(values, dtype=object) if values.dtype == object else values
                                 for name, values in out.items()})
        return out


def _pick_column(columns, requested: str | None, candidates: Sequence[str], argument: str) -> str:
    if requested is not None:
        if requested not in columns:
            raise KeyError(f"{argument}={requested!r} is not a column of the batch (columns: {sorted(columns)})")
        return requested
    for name in candidates:
        if name in columns:
            return name
    raise KeyError(f"the batch has none of the columns {list(candidates)} (columns: {sorted(columns)}); "
                   f"name the column with RayRecognizer({argument}=...)")


def _is_missing(value) -> bool:
    """None, or the NaN that pandas puts where a row lacks a value."""
    return value is None or (isinstance(value, float) and math.isnan(value))


# -- inputs ----------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    """What expand_inputs found: image files (and remote folders/files) for read_binary_files, tar shards for
    read_webdataset."""

    files: list[str]
    shards: list[str]


def _is_remote(path: str) -> bool:
    return "://" in path


def expand_inputs(inputs: Sequence[str]) -> Inputs:
    """Local files as given (.tar, .tar.gz, .tgz: a WebDataset shard; anything else an image), folders as their
    image files and shards (recursive, sorted), globs expanded (recursive with **). Remote URIs (s3://, gs://, ...)
    go to Ray as they are: a shard is read as one, anything else (a file or a folder) for its image files.
    Raises ValueError naming an input that does not exist or matches nothing."""
    if isinstance(inputs, (str, os.PathLike)):
        raise TypeError("inputs must be a list of paths, folders or globs, not a single str")
    files: list[str] = []
    shards: list[str] = []

    def add(path: str) -> None:
        (shards if is_shard(path) else files).append(path)

    for item in map(os.fspath, inputs):
        if _is_remote(item):
            add(item)
            continue
        for path, found in iter_input_paths([item]):
            if not found:
                reason = "the glob matches no file" if glob.has_magic(item) else "no such file or folder"
                raise ValueError(f"input {item!r}: {reason}")
            add(path)
    if not files and not shards:
        raise ValueError(f"no image files or .tar shards found in {list(map(os.fspath, inputs))}")
    return Inputs(files, shards)


def _is_image_member(suffix: str) -> bool:
    """A tar member's extension(s) after the sample key ("png", "seg.jpg") name an image format."""
    return suffix.lower().rsplit(".", 1)[-1] in _IMAGE_MEMBER_SUFFIXES


def _file_rows(batch: dict, with_shard: bool) -> dict:
    """read_binary_files rows (bytes, path) -> (bytes, id[, shard])."""
    out = {"bytes": batch["bytes"], "id": batch["path"]}
    if with_shard:
        out["shard"] = np.full(len(batch["path"]), None, dtype=object)
    return out


def _webdataset_rows(frame):
    """read_webdataset(decoder=None) rows (__key__, __url__, one column per member extension) -> (bytes, id,
    shard): the sample key is the id, the first image member (in IMAGE_EXTENSIONS order) the image."""
    import pandas as pd

    members = [c for c in frame.columns if not c.startswith("__") and _is_image_member(c)]
    rank = {ext: i for i, ext in enumerate(_IMAGE_MEMBER_SUFFIXES)}
    members.sort(key=lambda c: (c.count("."), rank.get(c.lower().rsplit(".", 1)[-1], len(rank)), c))
    images = []
    for row in range(len(frame)):
        image = None
        for column in members:
            value = frame[column].iat[row]
            if not _is_missing(value):
                image = value
                break
        images.append(image)
    return pd.DataFrame({"bytes": pd.Series(images, dtype=object),
                         "id": frame["__key__"].astype(str).to_numpy(),
                         "shard": frame["__url__"].astype(str).to_numpy()})


def build_dataset(inputs: Sequence[str] | Inputs, *, model: str | os.PathLike | None = None, device: str = "auto",
                  batch_size: int = 64, beam: int | None = None, lexicon: Iterable[str] | None = None,
                  concurrency: int | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
                  recognizer_options: dict | None = None):
    """The lazy Ray Dataset of results for `inputs` (as expand_inputs): columns id, text, confidence, error, and
    shard (the .tar a sample came from; None for plain files) when any input is a shard. ray.init() must have run.

    concurrency: actors (model copies); None: one per `num_gpus` GPUs of the cluster, or on CPUs one per
    `num_cpus` CPUs with one CPU left for the read tasks (when the actors hold every CPU the reads can never be
    scheduled and the job hangs). num_cpus, num_gpus: what each actor reserves; torch uses max(1, num_cpus)
    threads per actor. recognizer_options: more Recognizer options for every actor (precision, preprocess, ...);
    each map_batches call gets batch_size x window_batches rows (default 8), one of the recognizer's sort windows."""
    ray = import_ray()
    from ray.data import ActorPoolStrategy

    found = inputs if isinstance(inputs, Inputs) else expand_inputs(inputs)
    if not is_positive_int(batch_size):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not (isinstance(num_cpus, (int, float)) and num_cpus > 0):
        raise ValueError(f"num_cpus must be a positive number (CPUs per actor), got {num_cpus!r}")
    if not (isinstance(num_gpus, (int, float)) and num_gpus >= 0):
        raise ValueError(f"num_gpus must be a number >= 0 (GPUs per actor), got {num_gpus!r}")
    if beam is not None and not is_positive_int(beam):
        raise ValueError(f"beam must be a positive int (beam width) or None, got {beam!r}")
    if str(device).startswith("cuda") and not num_gpus:
        raise ValueError(f"device={device!r} needs num_gpus > 0: Ray gives an actor a GPU only when it asks for one")
    options = _check_recognizer_options(recognizer_options)
    concurrency = _actor_count(ray, concurrency, num_cpus, num_gpus)

    parts = []
    with_shard = bool(found.shards)
    if found.files:
        # Folders only for remote URIs (local ones were expanded); keep their image files alone.
        remote_folders = any(_is_remote(p) and not p.lower().endswith(IMAGE_EXTENSIONS) for p in found.files)
        files = ray.data.read_binary_files(found.files, include_paths=True,
                                           file_extensions=list(_IMAGE_MEMBER_SUFFIXES) if remote_folders else None)
        parts.append(files.map_batches(_file_rows, fn_kwargs={"with_shard": with_shard}, batch_format="numpy"))
    if found.shards:
        samples = ray.data.read_webdataset(found.shards, decoder=None, suffixes=_is_image_member)
        parts.append(samples.map_batches(_webdataset_rows, batch_format="pandas"))
    dataset = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    constructor = {"model": None if model is None else os.fspath(model), "device": device,
                   "batch_size": batch_size, "beam": beam, "lexicon": None if lexicon is None else list(lexicon),
                   "num_threads": max(1, int(num_cpus)), **options}
    rows_per_call = batch_size * options.get("window_batches", MODEL_BATCHES_PER_CALL)
    return dataset.map_batches(RayRecognizer, fn_constructor_kwargs=constructor,
                               batch_size=rows_per_call, batch_format="numpy",
                               compute=ActorPoolStrategy(size=concurrency), num_cpus=num_cpus, num_gpus=num_gpus)


def _check_recognizer_options(recognizer_options: dict | None) -> dict:
    """Here, not in every actor: an actor that fails to start makes Ray retry it, and the error arrives late."""
    import inspect

    from ..recognize import PRECISIONS, PREPROCESS, Recognizer

    options = dict(recognizer_options or {})
    own = {"model", "device", "batch_size", "beam", "lexicon", "num_threads"} & set(options)
    if own:
        raise ValueError(f"recognizer_options must not set {sorted(own)}: pass them as arguments of their own")
    accepted = set(inspect.signature(Recognizer.__init__).parameters) - {"self", "model", "charset", "meta"}
    unknown = set(options) - accepted
    if unknown:
        raise TypeError(f"recognizer_options has unknown keys {sorted(unknown)}; Recognizer takes {sorted(accepted)}")
    if options.get("precision", "fp32") not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {options['precision']!r}")
    if options.get("preprocess", "auto") not in PREPROCESS:
        raise ValueError(f"preprocess must be one of {list(PREPROCESS)}, got {options['preprocess']!r}")
    return options


def _actor_count(ray, concurrency: int | None, num_cpus: float, num_gpus: float) -> int:
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if concurrency is None:
        if num_gpus:
            return max(1, int(gpus // num_gpus))
        return max(1, int((cpus - 1) // num_cpus))
    if not is_positive_int(concurrency):
        raise ValueError(f"concurrency must be a positive int (number of actors) or None, got {concurrency!r}")
    if concurrency * num_cpus > cpus - 1:
        warnings.warn(f"concurrency={concurrency} actors x num_cpus={num_cpus} leave less than one of the cluster's "
                      f"{cpus:g} CPUs for reading; unless the cluster grows, the read tasks wait forever. Use fewer "
                      "actors or a smaller num_cpus.", stacklevel=3)
    if num_gpus and concurrency * num_gpus > gpus:
        warnings.warn(f"concurrency={concurrency} actors x num_gpus={num_gpus} need more than the cluster's {gpus:g} "
                      "GPUs; the actors that do not fit wait for GPUs to appear.", stacklevel=3)
    return concurrency


# -- output ----------------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    output: Path
    rows: int
    errors: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def _output_format(output: str | os.PathLike) -> str:
    suffix = Path(output).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"output {os.fspath(output)!r} must end with {' or '.join(OUTPUT_SUFFIXES)} "
                         "(the suffix picks the format)")
    return suffix[1:]


def output_columns(inputs: Inputs) -> list[str]:
    """The columns build_dataset gives for these inputs: id, shard (only with .tar inputs), text, confidence, error."""
    return ["id"] + (["shard"] if inputs.shards else []) + list(RESULT_COLUMNS)


def write_results(dataset, output: str | os.PathLike, columns: Sequence[str] = ("id", *RESULT_COLUMNS)
                  ) -> tuple[int, int]:
    """Stream `dataset` (build_dataset's `columns`, see output_columns) into one Parquet or JSON-lines file on this
    machine (the format by suffix); returns (rows, rows with an error). As in `crnn-fast recognize --json`, a
    failed row has text and confidence null. Written to OUTPUT.partial first, so a job that fails leaves no
    complete-looking file."""
    fmt = _output_format(output)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    columns = list(columns)
    rows = errors = 0
    writer = None
    try:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.schema([(c, pa.float64() if c == "confidence" else pa.string()) for c in columns])
            writer = pq.ParquetWriter(partial, schema)
        else:
            writer = open(partial, "w", encoding="utf-8")
        # batch_size=None: whole blocks, never concatenated across blocks (whose column types may differ: an
        # all-None shard column is Arrow's null type).
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            record = _result_record(batch, columns)
            rows += len(record["id"])
            errors += sum(e is not None for e in record["error"])
            if fmt == "parquet":
                writer.write_table(pa.table(record, schema=schema))
            else:
                for i in range(len(record["id"])):
                    writer.write(json.dumps({c: record[c][i] for c in columns}, ensure_ascii=False) + "\n")
    finally:
        if writer is not None:
            writer.close()
    os.replace(partial, output)
    return rows, errors


def _result_record(batch: dict, columns: Sequence[str]) -> dict:
    """Python lists per column, None where a value is missing; text and confidence None on error rows."""
    record = {c: [None if _is_missing(v) else v for v in batch[c].tolist()] for c in columns}
    for i, error in enumerate(record["error"]):
        if error is not None:
            record["text"][i] = record["confidence"][i] = None
    record["id"] = [str(v) for v in record["id"]]
    return record


# -- entry points ----------------------------------------------------------------------------------------


def run(inputs: Sequence[str], output: str | os.PathLike, *, model: str | os.PathLike | None = None,
        device: str = "auto", batch_size: int = 64, beam: int | None = None,
        lexicon: str | os.PathLike | Iterable[str] | None = None, concurrency: int | None = None,
        num_cpus: float = 1.0, num_gpus: float = 0.0, address: str | None = None, progress: bool = True,
        recognizer_options: dict | None = None) -> RunSummary:
    """Recognise every image in `inputs` (files, folders, globs, .tar WebDataset shards; see expand_inputs) on a
    Ray cluster and write one row per image to `output` (.parquet or .jsonl; see write_results).

    address: a running cluster ("auto", "host:6379", "ray://host:10001"); None starts a local one (or uses
    $RAY_ADDRESS) and loads `model` here first, to fail fast on a bad one. If Ray is already initialised in this
    process, that cluster is used and left running.
    lexicon: a word list or a file of words (read here, so worker nodes need not have the file).
    Other arguments: as build_dataset. Raises ValueError naming a bad argument before any work starts."""
    ray = import_ray()
    _output_format(output)
    found = expand_inputs(inputs)
    if isinstance(lexicon, (str, os.PathLike)):
        if not os.path.isfile(lexicon):
            raise ValueError(f"lexicon {os.fspath(lexicon)!r}: no such file")
        lexicon = [w.strip() for w in Path(lexicon).read_text(encoding="utf-8").splitlines() if w.strip()]
    if model is not None and address is None:
        # A local cluster shares this machine's files: check the model here, once, rather than fail every actor.
        from ..models.pretrained import load_pretrained

        load_pretrained(model)
    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(include_dashboard=False)
        else:
            ray.init(address=address)
        started = True
    try:
        ray.data.DataContext.get_current().enable_progress_bars = progress
        start = time.perf_counter()
        dataset = build_dataset(found, model=model, device=device, batch_size=batch_size, beam=beam, lexicon=lexicon,
                                concurrency=concurrency, num_cpus=num_cpus, num_gpus=num_gpus,
                                recognizer_options=recognizer_options)
        rows, errors = write_results(dataset, output, output_columns(found))
        return RunSummary(Path(output), rows, errors, time.perf_counter() - start)
    finally:
        if started:
            ray.shutdown()


PROG = "python -m crnn_fast.integrations.ray"
EXIT_ITEM_ERRORS = 1
EXIT_USAGE = 2


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Recognise text in many images on a Ray cluster (Ray Data); one row per image.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (searched recursively for images and shards), globs, "
                             "WebDataset .tar/.tar.gz/.tgz shards, or s3://... / gs://... URIs")
    parser.add_argument("--output", "-o", required=True,
                        help="results file: .parquet or .jsonl (columns id, [shard,] text, confidence, error)")
    parser.add_argument("--model", default=None, help="shipped model name or .safetensors path (default: shipped)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (cuda needs --num-gpus)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--beam", type=int, default=None, help="beam search with this beam width")
    parser.add_argument("--lexicon", default=None, help="file of allowed words, one per line")
    parser.add_argument("--precision", default=None, choices=["fp32", "fp16", "bf16"],
                        help="autocast dtype of the network (default fp32; fp16 is the fast one on GPUs)")
    parser.add_argument("--preprocess", default=None, choices=["auto", "host", "device"],
                        help="resize on the CPU (host) or on the device (default: device on CUDA)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="actors (model copies); default: one per GPU, or on CPUs one per --num-cpus CPUs "
                             "with one CPU left for reading")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor (torch threads per actor)")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor (1 with --device cuda)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (auto, host:6379, ray://host:10001); default: a local cluster")
    parser.add_argument("--no-progress", action="store_true", help="no Ray Data progress bars")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Command line: 0 when every image was read, 1 when some rows have an error (they are in the output), 2 on
    a usage error (message on stderr)."""
    args = build_parser(prog).parse_args(argv)

    def usage_error(message: str) -> int:
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USAGE

    try:
        import_ray()
    except ImportError as e:
        return usage_error(str(e))
    from ..models.pretrained import WeightsError

    options = {k: v for k, v in (("precision", args.precision), ("preprocess", args.preprocess)) if v is not None}
    try:
        summary = run(args.inputs, args.output, model=args.model, device=args.device, batch_size=args.batch_size,
                      beam=args.beam, lexicon=args.lexicon, concurrency=args.concurrency, num_cpus=args.num_cpus,
                      num_gpus=args.num_gpus, address=args.address, progress=not args.no_progress,
                      recognizer_options=options)
    except (ValueError, TypeError, FileNotFoundError, WeightsError) as e:
        return usage_error(str(e))
    print(f"{prog}: {summary.rows} images, {summary.errors} errors, {summary.images_per_s:.1f} images/s "
          f"-> {summary.output}", file=sys.stderr)
    return EXIT_ITEM_ERRORS if summary.errors else 0


if __name__ == "__main__":
    # Run through the importable module, not __main__, so that Ray pickles RayRecognizer by reference.
    from crnn_fast.integrations.ray import main as _main

    sys.exit(_main())
