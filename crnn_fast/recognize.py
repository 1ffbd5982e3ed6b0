"""Recognizer: images (paths, encoded bytes, PIL images, numpy arrays) -> text and confidence, batched.

Dimensions: B images in a batch, W the padded width, T = W // 4 + 1 frames, K classes.

Pipeline, streaming over any iterable of inputs with bounded memory:
  1. load (CPU; `workers` threads read ahead): decode + grayscale (datasets.load_line: regular files only, the
     line width checked from the header, huge files decoded reduced); a bad item gets an error result and is
     left out. preprocess="host" then resizes to height 32 with PIL here; preprocess="device" only does the
     cheap integer reduce of huge images (datasets.plan_resize) and leaves the filtered resize to the device.
  2. a window of `window_batches` batches is sorted by output width and cut into batches, so that images of
     similar width share a batch and padding stays small;
  3. per batch: one pinned, non-blocking upload of the packed pixels; resize + normalise + pad on the device
     (crnn_fast.ops.preprocess), padded to one of a few widths (bucket_width); the CNN (channels_last on CUDA)
     and the LSTMs under autocast when `precision` is fp16/bf16, with the true widths so that padding never
     changes a result; decoding on the device (greedy) or through CTCDecoder (beam search with the model's
     LM by default when its sidecar names one, a beam width or a lexicon); one device-to-host copy of the
     decoded batch;
  4. results come out in input order. A CUDA out-of-memory error halves the batch size and retries.
Optional CUDA-graph capture of the network per (batch, width bucket): cuda_graphs=True.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ._beam_checks import check_beam_width
from ._checks import check_positive_int, resolve_device
from .data.charset import Charset
from .data.datasets import MAX_WIDTH, ImageError, load_line, prepare_image
from .formats.image_batch import pad_batch
from .models.crnn import CRNN
from .models.onnx import OnnxCRNN, is_onnx_path

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
PREPROCESS = ("auto", "host", "device")
# Replicated columns after every image, also the widest of its batch: the CNN's receptive field reaches this far
# past an image's last column, so with them its features no longer depend on whether the image is followed by
# padding (in a batch) or by the convolutions' zero padding (alone). Measured on the shipped model: 32 columns
# make the log-probs of an image the same padded by 32 or 300 columns (to 6e-6); 24 do not (0.9).
GUARD_COLUMNS = 32
GRAPH_WIDTH_STEP = 64  # with cuda_graphs, batches are padded to a multiple of this width: few graphs to capture
# Batches are padded to one of a few widths, WIDTH_BUCKET_STEPS per doubling (at most 1/4 wider than needed):
# oneDNN (and cuDNN) keep a compiled kernel per input shape they see, and over a long run of images of every
# width those add up to gigabytes. The padding never changes a result (the true widths go with the batch).
WIDTH_BUCKET_STEPS = 4


def text_confidence(char_logprobs: list[float], empty_logprob: float, frames: int) -> float:
    """RecognitionResult.confidence: the geometric mean of the per-character probabilities (char_logprobs, their
    logs); for an empty text the per-frame probability exp(empty_logprob / frames) of its all-blank path."""
    if char_logprobs:
        return float(min(1.0, math.exp(sum(char_logprobs) / len(char_logprobs))))
    return float(min(1.0, math.exp(empty_logprob / max(1, frames))))


def bucket_width(width: int) -> int:
    """The smallest bucket width >= `width`: m * 2**k with m in [WIDTH_BUCKET_STEPS, 2 * WIDTH_BUCKET_STEPS)."""
    k = max(0, (width - 1).bit_length() - WIDTH_BUCKET_STEPS.bit_length())
    return -(-width // (1 << k)) * (1 << k)
MAX_GRAPHS = 32
MAX_DECODERS = 8  # beam/lexicon decoders kept for reuse, least recently used dropped first


@dataclass
class RecognitionResult:
    """One image's result. error is None, or a message saying why the item could not be recognised (then
    text is "" and confidence 0.0). confidence: geometric mean of the per-character probabilities
    (char_confidences), or for an empty text the probability of the all-blank path per frame."""

    text: str
    confidence: float
    char_confidences: list[float] = field(default_factory=list)
    source: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict:
        return {"source": self.source, "text": self.text, "confidence": round(self.confidence, 6),
                "error": self.error}


def _describe(item, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return f"<{type(item).__name__} #{index}>"


_SINGLE_TYPES = (str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray, torch.Tensor)


@dataclass
class _Loaded:
    """An image ready for batching: `pixels` is (32, width) after a host resize, or the (reduced) grayscale
    image that the device resizes to `width` columns."""

    index: int
    pixels: np.ndarray
    width: int


class Recognizer:
    """Batched text recognition with a CRNN.

    model: a CRNN whose num_classes matches `charset`, or an OnnxCRNN (models.onnx.load_onnx: the network runs in
        onnxruntime, in the precision it was exported in, on its session's device); charset: its Charset.
    device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1", ...
    batch_size: images per forward pass (the largest; a CUDA out-of-memory error lowers it for the rest of the run).
    max_width: widest input (pixels at height 32) accepted.
    precision: "fp32", "fp16" or "bf16": autocast dtype of the network (decoding always reads float32).
    preprocess: "host" (PIL resize on the CPU), "device" (resize, normalise and pad on the device) or "auto"
        (device on CUDA, host on the CPU).
    workers: threads that decode images ahead of the network (default: min(8, CPUs) on CUDA, 0 on the CPU,
        where the network wants the cores).
    window_batches: batches' worth of images sorted by width together (memory is bounded by this window).
    cuda_graphs: capture the network in a CUDA graph per (batch size, width bucket) and replay it.
    decoding: the default decoding, None for greedy (best path), or {"beam_width", "lm" (a CharNgramLM or
        None), "lm_weight", "insertion_bonus"}: beam search with the LM by shallow fusion, also for calls that
        pass a beam width or a lexicon. from_pretrained takes it from the model's sidecar (models.pretrained
        .load_decoding).
    """

    def __init__(self, model: CRNN | OnnxCRNN, charset: Charset, *, device: str | torch.device | None = "auto",
                 batch_size: int = 64, max_width: int = MAX_WIDTH, meta: dict | None = None,
                 precision: str = "fp32", preprocess: str = "auto", workers: int | None = None,
                 window_batches: int = 8, cuda_graphs: bool = False, decoding: dict | None = None):
        if not isinstance(model, (CRNN, OnnxCRNN)):
            raise TypeError(f"model must be a crnn_fast.CRNN or OnnxCRNN, got {type(model).__name__}")
        if not isinstance(charset, Charset):
            raise TypeError(f"charset must be a crnn_fast.Charset, got {type(charset).__name__}")
        if model.num_classes != charset.num_classes:
            raise ValueError(f"model has {model.num_classes} classes but charset has {charset.num_classes} "
                             "(characters + blank)")
        check_positive_int(batch_size, "batch_size")
        check_positive_int(window_batches, "window_batches")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if preprocess not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {list(PREPROCESS)}, got {preprocess!r}")
        if workers is not None and (not isinstance(workers, int) or workers < 0):
            raise ValueError(f"workers must be None or an int >= 0, got {workers!r}")
        self.device = resolve_device(device)
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs a CUDA device, got {self.device}")
        on_cuda = self.device.type == "cuda"
        if isinstance(model, OnnxCRNN):
            if self.device != model.device:
                raise ValueError(f"device {str(self.device)!r} differs from the ONNX model's {str(model.device)!r} "
                                 "(load_onnx chooses it)")
            if precision != "fp32" or cuda_graphs:
                raise ValueError("precision and cuda_graphs do not apply to an ONNX model (its precision is fixed "
                                 f"at export: {model.precision}); leave them at 'fp32' and False")
            self.model = model
        else:
            self.model = model.to(self.device).eval()
            if on_cuda:
                self.model = self.model.to(memory_format=torch.channels_last)
        self.charset = charset
        self.batch_size = batch_size
        self.max_width = max_width
        self.meta = meta or {}
        self.precision = precision
        self.preprocess = ("device" if on_cuda else "host") if preprocess == "auto" else preprocess
        self.workers = (min(8, os.cpu_count() or 1) if on_cuda else 0) if workers is None else workers
        self.window_batches = window_batches
        self.cuda_graphs = cuda_graphs
        if decoding is not None:
            keys = {"beam_width", "lm", "lm_weight", "insertion_bonus"}
            if not isinstance(decoding, dict) or not keys <= set(decoding):
                raise ValueError("decoding must be None or a dict with beam_width, lm, lm_weight and insertion_bonus, "
                                 f"got {decoding!r}")
            check_beam_width(decoding["beam_width"], "decoding['beam_width']")
        self.decoding = decoding
        self.min_width = max(self.model.min_width, 8)
        self.guard_columns = GUARD_COLUMNS
        self._batch_cap = batch_size  # lowered by out-of-memory back-off
        self._decoders: collections.OrderedDict = collections.OrderedDict()  # (beam, words) -> CTCDecoder, LRU
        self._graphs: collections.OrderedDict = collections.OrderedDict()
        from .ops.ctc_greedy import greedy_on_device

        self._greedy = greedy_on_device(self.device)  # decodes where the log-probs are

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, *, device="auto",
                        lstm_backend: str = "auto", lm: bool = True, **kwargs) -> Recognizer:
        """Load a shipped model by name (default: the package's crnn_small_ascii), a .safetensors path or an
        .onnx path (crnn_fast.export_onnx; run in onnxruntime) with its .json sidecar.
        lm: decode as the sidecar says (beam search with the language model shipped beside the weights, when it
        names one); False: greedy unless a call asks for a beam or a lexicon.
        Raises FileNotFoundError / models.pretrained.WeightsError with the reason."""
        from .models.pretrained import load_decoding, load_pretrained, resolve_weights

        if is_onnx_path(name_or_path):
            from .models.onnx import load_onnx

            if lstm_backend != "auto":
                raise ValueError(f"lstm_backend={lstm_backend!r} does not apply to an ONNX model (onnxruntime runs "
                                 "its LSTM nodes)")
            model, charset, meta = load_onnx(name_or_path, device=device)
            if lm:
                kwargs.setdefault("decoding", load_decoding(Path(name_or_path).with_suffix(".json"), meta))
            return cls(model, charset, device=model.device, meta=meta, **kwargs)
        model, charset, meta = load_pretrained(name_or_path, lstm_backend=lstm_backend)
        if lm:
            kwargs.setdefault("decoding", load_decoding(resolve_weights(name_or_path)[1], meta))
        return cls(model, charset, device=device, meta=meta, **kwargs)

    # -- public API ----------------------------------------------------------------------------------------

    def recognize(self, images, *, batch_size: int | None = None, beam: int | None = None,
                  lexicon: Iterable[str] | str | os.PathLike | None = None, progress: bool = False,
                  greedy: bool = False) -> list[RecognitionResult] | RecognitionResult:
        """Recognise `images`: a list of paths, encoded image bytes, PIL images and/or numpy arrays
        (uint8/uint16/float; gray, RGB, RGBA or palette). A single path / image / array gives a single result,
        a list a list in input order. A bad item gets a result with .error set; the others are still recognised.
        beam: beam width (CTCDecoder), an int in [1, 4096] (MAX_BEAM_WIDTH: 0 is an error), or None for the
        default decoding (see `decoding`: greedy, or beam search with the model's LM); lexicon: allowed words (a
        list or a file, one word per line); greedy: best path, whatever the default."""
        single = isinstance(images, _SINGLE_TYPES)
        items = [images] if single else list(images)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), unit="img", desc="recognize", leave=False)
        results = []
        for r in self.recognize_iter(items, batch_size=batch_size, beam=beam, lexicon=lexicon, greedy=greedy):
            results.append(r)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return results[0] if single else results

    __call__ = recognize

    def recognize_iter(self, images: Iterable, *, batch_size: int | None = None, beam: int | None = None,
                       lexicon: Iterable[str] | str | os.PathLike | None = None, greedy: bool = False
                       ) -> Iterator[RecognitionResult]:
        """Stream results in input order for any iterable of images (a generator over a million files is
        fine: memory is bounded by window_batches x batch_size images)."""
        if batch_size is not None:
            check_positive_int(batch_size, "batch_size")
        decoder = self.decoder(beam, lexicon, greedy)
        window = (batch_size or self.batch_size) * self.window_batches
        loaded = self._load_all(images, lookahead=window + (batch_size or self.batch_size))
        while True:
            chunk = list(itertools.islice(loaded, window))
            if not chunk:
                return
            yield from self._run_window(chunk, batch_size or self.batch_size, decoder)

    # -- loading -------------------------------------------------------------------------------------------

    def _load(self, index: int, item) -> _Loaded | RecognitionResult:
        try:
            if self.preprocess == "host":
                pixels = prepare_image(item, max_width=self.max_width, min_width=self.min_width)
                return _Loaded(index, pixels, pixels.shape[1])
            pixels, width = load_line(item, max_width=self.max_width)
            return _Loaded(index, np.ascontiguousarray(pixels), width)
        except (ImageError, TypeError) as e:
            return RecognitionResult("", 0.0, source=_describe(item, index), error=str(e))
        except Exception as e:  # never let one odd item stop the batch
            return RecognitionResult("", 0.0, source=_describe(item, index), error=f"{type(e).__name__}: {e}")

    def _load_all(self, images: Iterable, lookahead: int) -> Iterator[tuple[object, _Loaded | RecognitionResult]]:
        """(item, loaded) in input order; with workers, up to `lookahead` items are decoded ahead."""
        numbered = enumerate(images)
        if self.workers == 0:
            for i, item in numbered:
                yield item, self._load(i, item)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="crnn_fast-load") as pool:
            pending: collections.deque = collections.deque()
            for i, item in numbered:
                pending.append((item, pool.submit(self._load, i, item)))
                if len(pending) >= lookahead:
                    item0, future = pending.popleft()
                    yield item0, future.result()
            while pending:
                item0, future = pending.popleft()
                yield item0, future.result()

    # -- batches -------------------------------------------------------------------------------------------

    def _run_window(self, chunk: list, batch_size: int, decoder) -> list[RecognitionResult]:
        results: list[RecognitionResult | None] = [None] * len(chunk)
        ready: list[tuple[int, _Loaded]] = []
        for pos, (_item, loaded) in enumerate(chunk):
            if isinstance(loaded, RecognitionResult):
                results[pos] = loaded
            else:
                ready.append((pos, loaded))
        ready.sort(key=lambda p: p[1].width)
        lo = 0
        while lo < len(ready):
            size = min(batch_size, self._batch_cap)
            part = ready[lo: lo + size]
            for (pos, _), r in zip(part, self._run_batch_safe([p for _, p in part], decoder)):
                results[pos] = r
            lo += len(part)
        for pos, (item, loaded) in enumerate(chunk):
            r = results[pos]
            if r.source is None:
                r.source = _describe(item, loaded.index)
        return results  # type: ignore[return-value]

    def _run_batch_safe(self, batch: list[_Loaded], decoder) -> list[RecognitionResult]:
        """_run_batch with out-of-memory back-off: split the batch in halves and lower the batch size."""
        try:
            return self._run_batch(batch, decoder)
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(batch) == 1:
                return [RecognitionResult("", 0.0, error=f"out of memory on {self.device} for one image "
                                                         f"{batch[0].width} px wide")]
            half = len(batch) // 2
            if half < self._batch_cap:
                warnings.warn(f"out of memory on {self.device} at batch size {len(batch)}; continuing with "
                              f"batch size {half}", RuntimeWarning, stacklevel=2)
                self._batch_cap = half
            return self._run_batch_safe(batch[:half], decoder) + self._run_batch_safe(batch[half:], decoder)

    def _model_input(self, batch: list[_Loaded]) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, 1, 32, W) float32 on the device, true widths (B,) int64 on the host)."""
        widths = torch.tensor([max(p.width, self.min_width) for p in batch], dtype=torch.int64)
        pad_width = int(widths.max()) + self.guard_columns
        if self.cuda_graphs:
            pad_width = -(-pad_width // GRAPH_WIDTH_STEP) * GRAPH_WIDTH_STEP
        else:
            pad_width = bucket_width(pad_width)
        if self.preprocess == "host":
            images = pad_batch([p.pixels for p in batch], min_width=pad_width).images
            return images.to(self.device, non_blocking=True), widths
        from .ops.preprocess import pack_images, resize_normalize_pad

        packed = pack_images([p.pixels for p in batch], [p.width for p in batch],
                             pin_memory=self.device.type == "cuda")
        data, meta = packed.to(self.device)
        return resize_normalize_pad(data, meta, pad_width, meta_host=packed.meta), widths

    def _network(self, images: torch.Tensor, widths: torch.Tensor | None) -> torch.Tensor:
        dtype = PRECISIONS[self.precision]
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            log_probs = self.model(images, widths).float()
        # A log_softmax rounded to fp16/bf16 sums to 1 only within a few percent; the beam decoder checks that
        # its input is normalised, so renormalise in float32 (a no-op on exact log-probabilities).
        return log_probs if dtype is None else log_probs.log_softmax(-1)

    @torch.inference_mode()
    def _run_batch(self, batch: list[_Loaded], decoder) -> list[RecognitionResult]:
        n = len(batch)
        if self.cuda_graphs and n < self._batch_cap:  # a graph per batch size: fill the batch up
            batch = batch + [batch[-1]] * (self._batch_cap - n)
        images, widths = self._model_input(batch)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        if self.cuda_graphs:
            log_probs = self._graphed_network(images)[:n]
            widths = widths[:n]
        else:
            log_probs = self._network(images, widths)  # (B, T, K)
        lengths = self.model.output_lengths(widths).clamp(max=log_probs.shape[1])
        if decoder is not None:
            return self._beam_results(decoder, log_probs, lengths)
        return self._greedy_results(log_probs, lengths)

    def _graphed_network(self, images: torch.Tensor) -> torch.Tensor:
        """The network replayed from a CUDA graph captured for this (B, W): static input and output buffers,
        captured after two warm-up runs on a side stream (as torch.cuda.graphs documents). The true widths
        cannot be passed (packing by lengths is host-side control flow), so the LSTMs also read the padding
        columns: results can differ slightly from cuda_graphs=False for images much narrower than their batch."""
        B, W = images.shape[0], images.shape[-1]
        key = (B, W)
        entry = self._graphs.get(key)
        if entry is None:
            static_images = images.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._network(static_images, None)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._network(static_images, None)
            entry = (graph, static_images, static_out)
            self._graphs[key] = entry
            if len(self._graphs) > MAX_GRAPHS:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        graph, static_images, static_out = entry
        static_images.copy_(images)
        graph.replay()
        return static_out.clone()

    def _greedy_results(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[RecognitionResult]:
        out = self._greedy(log_probs, lengths.to(log_probs.device))
        # One device-to-host copy for the whole batch: token ids (< 2**24, exact in float32), their log-probs,
        # the token counts and the path log-prob side by side.
        packed = torch.cat([out.tokens.float(), out.token_logprobs.float(), out.token_lengths[:, None].float(),
                            out.path_logprob[:, None].float()], dim=1).cpu()
        T = out.tokens.shape[1]
        ids = packed[:, :T].to(torch.int64).tolist()
        logps = packed[:, T: 2 * T].tolist()
        counts = packed[:, 2 * T].to(torch.int64).tolist()
        path = packed[:, 2 * T + 1].tolist()
        frames = lengths.tolist()
        results = []
        for b, n in enumerate(counts):
            text = self.charset.decode(ids[b][:n])
            confs = [math.exp(v) for v in logps[b][:n]]
            results.append(RecognitionResult(text, text_confidence(logps[b][:n], path[b], frames[b]), confs))
        return results

    def _beam_results(self, decoder, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[RecognitionResult]:
        hyps = decoder.decode(log_probs, lengths)
        results = []
        for b, item in enumerate(hyps):
            best = item[0] if isinstance(item, (list, tuple)) and item else item
            if best is None or (isinstance(item, (list, tuple)) and not item):
                results.append(RecognitionResult("", 0.0))
                continue
            text = getattr(best, "text", "")
            confs = [float(c) for c in (getattr(best, "confidences", None) or [])]
            char_logps = [math.log(max(c, 1e-12)) for c in confs]
            empty_frames = len(text) or int(lengths[b])  # a text without confidences: per character instead
            results.append(RecognitionResult(text, text_confidence(char_logps, float(getattr(best, "score", 0.0)),
                                                                   empty_frames), confs))
        return results

    def decoder(self, beam: int | None = None, lexicon=None, greedy: bool = False):
        """The CTCDecoder that recognize() uses for these options (built once, then cached), or None for greedy
        decoding (best path on the device). Raises ValueError for a bad option: call it up front to check
        options before reading any image."""
        if not isinstance(greedy, bool):
            raise TypeError(f"greedy must be a bool, got {type(greedy).__name__}")
        if beam is not None:
            check_beam_width(beam, "beam")
        if greedy:
            if beam is not None or lexicon is not None:
                raise ValueError("greedy=True decodes the best path: it takes no beam or lexicon")
            return None
        if not beam and lexicon is None and self.decoding is None:
            return None
        words = _lexicon_words(lexicon) if lexicon is not None else None
        # Keyed by the words themselves: an id() is reused by the next list once the first is freed, and a list
        # edited in place keeps its id, so either would hand back a decoder built for other words.
        key = (beam, words)
        decoder = self._decoders.get(key)
        if decoder is not None:
            self._decoders.move_to_end(key)
            return decoder
        from .decoding import CTCDecoder  # loaded on first use, like the other heavier parts

        defaults = self.decoding or {}
        kwargs = {"beam_width": beam or defaults.get("beam_width", 16)}
        if defaults.get("lm") is not None:
            kwargs.update(lm=defaults["lm"], lm_weight=defaults["lm_weight"],
                          insertion_bonus=defaults["insertion_bonus"])
        if words is not None:
            kwargs["lexicon"] = list(words)
        decoder = CTCDecoder(self.charset, **kwargs)
        self._decoders[key] = decoder
        while len(self._decoders) > MAX_DECODERS:
            self._decoders.popitem(last=False)
        return decoder


def _lexicon_words(lexicon) -> tuple[str, ...]:
    """The words of a lexicon given as an iterable of str or a file (one word per line)."""
    if isinstance(lexicon, (str, os.PathLike)):
        return tuple(w.strip() for w in Path(lexicon).read_text(encoding="utf-8").splitlines() if w.strip())
    if not isinstance(lexicon, Iterable) or isinstance(lexicon, (bytes, bytearray)):
        raise TypeError(f"lexicon must be an iterable of words (str) or a word-list file, got {type(lexicon).__name__}")
    words = tuple(lexicon)
    for i, w in enumerate(words):
        if not isinstance(w, str):
            raise TypeError(f"lexicon must hold str words, got {type(w).__name__} at index {i}")
    return words

__all__ = ["Recognizer", "RecognitionResult", "PRECISIONS", "resolve_device"]
