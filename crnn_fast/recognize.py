"""Recognizer: image files / PIL images / numpy arrays -> text and confidence, batched.

Dimensions: B images in a batch, W the padded width, T = W // 4 + 1 frames, K classes.

Pipeline per batch: decode + grayscale + resize to height 32 (CPU, per item; a bad item gets an error and
is left out) -> sort by width and batch neighbours (little padding) -> CRNN -> CTC decode (greedy by
default; beam search / lexicon through crnn_fast.decoding.CTCDecoder) -> results in the input order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data.charset import Charset
from .data.datasets import MAX_WIDTH, ImageError, prepare_image
from .data.synth import pad_batch
from .models.crnn import CRNN


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


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was requested but CUDA is not available here")
    return device


def _describe(item, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return f"<{type(item).__name__} #{index}>"


class Recognizer:
    """Batched text recognition with a CRNN.

    model: a CRNN whose num_classes matches `charset`; charset: its Charset.
    device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1", ...
    batch_size: images per forward pass; max_width: widest input (pixels at height 32) accepted.
    """

    def __init__(self, model: CRNN, charset: Charset, *, device: str | torch.device | None = "auto",
                 batch_size: int = 64, max_width: int = MAX_WIDTH, meta: dict | None = None):
        if not isinstance(model, CRNN):
            raise TypeError(f"model must be a crnn_fast.CRNN, got {type(model).__name__}")
        if not isinstance(charset, Charset):
            raise TypeError(f"charset must be a crnn_fast.Charset, got {type(charset).__name__}")
        if model.num_classes != charset.num_classes:
            raise ValueError(f"model has {model.num_classes} classes but charset has {charset.num_classes} "
                             "(characters + blank)")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.charset = charset
        self.batch_size = batch_size
        self.max_width = max_width
        self.meta = meta or {}
        self._decoders: dict = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, *, device="auto",
                        lstm_backend: str = "auto", **kwargs) -> Recognizer:
        """Load a shipped model by name (default: the package's crnn_small_ascii) or a .safetensors path
        with its .json sidecar. Raises FileNotFoundError / models.pretrained.WeightsError with the reason."""
        from .models.pretrained import load_pretrained

        model, charset, meta = load_pretrained(name_or_path, lstm_backend=lstm_backend)
        return cls(model, charset, device=device, meta=meta, **kwargs)

    # -- public API ----------------------------------------------------------------------------------------

    def recognize(self, images, *, batch_size: int | None = None, beam: int | None = None,
                  lexicon: Iterable[str] | str | os.PathLike | None = None, progress: bool = False
                  ) -> list[RecognitionResult] | RecognitionResult:
        """Recognise `images`: a list of paths, encoded image bytes, PIL images and/or numpy arrays
        (uint8/uint16/float; gray, RGB, RGBA or palette). A single path / image / array gives a single result,
        a list a list in input order.
        A bad item gets a result with .error set; the others are still recognised."""
        single = isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray,
                                     torch.Tensor))
        items = [images] if single else list(images)
        results = self._recognize_list(items, batch_size or self.batch_size, beam, lexicon, progress)
        return results[0] if single else results

    __call__ = recognize

    # -- internals ---------------------------------------------------------------------------------------

    def _decoder(self, beam: int | None, lexicon):
        if not beam and lexicon is None:
            return None
        key = (beam, id(lexicon) if lexicon is not None else None)
        if key in self._decoders:
            return self._decoders[key]
        option = "--lexicon" if lexicon is not None else "--beam"
        try:
            from .decoding import CTCDecoder
        except ImportError as e:
            raise NotImplementedError(f"{option} needs crnn_fast.decoding.CTCDecoder, which is not available in "
                                      f"this build ({e}); use greedy decoding (no {option})") from None
        if isinstance(lexicon, (str, os.PathLike)):
            lexicon = [w.strip() for w in Path(lexicon).read_text(encoding="utf-8").splitlines() if w.strip()]
        kwargs = {"beam_width": beam or 16}
        if lexicon is not None:
            kwargs["lexicon"] = list(lexicon)
        decoder = CTCDecoder(self.charset, **kwargs)
        self._decoders[key] = decoder
        return decoder

    def _recognize_list(self, items: Sequence, batch_size: int, beam, lexicon, progress: bool
                        ) -> list[RecognitionResult]:
        decoder = self._decoder(beam, lexicon)
        results: list[RecognitionResult | None] = [None] * len(items)
        prepared: list[tuple[int, np.ndarray]] = []
        min_width = max(self.model.min_width, 8)
        for i, item in enumerate(items):
            source = _describe(item, i)
            try:
                prepared.append((i, prepare_image(item, max_width=self.max_width, min_width=min_width)))
            except (ImageError, TypeError) as e:
                results[i] = RecognitionResult("", 0.0, source=source, error=str(e))
            except Exception as e:  # never let one odd item stop the batch
                results[i] = RecognitionResult("", 0.0, source=source, error=f"{type(e).__name__}: {e}")
        prepared.sort(key=lambda p: p[1].shape[1])
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), unit="img", desc="recognize", leave=False)
            bar.update(len(items) - len(prepared))
        for lo in range(0, len(prepared), batch_size):
            chunk = prepared[lo: lo + batch_size]
            for (i, _), r in zip(chunk, self._run_batch([a for _, a in chunk], decoder)):
                r.source = _describe(items[i], i)
                results[i] = r
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _run_batch(self, arrays: list[np.ndarray], decoder) -> list[RecognitionResult]:
        batch = pad_batch(arrays, min_width=max(self.model.min_width, 8))
        images = batch.images.to(self.device, non_blocking=True)  # (B, 1, 32, W)
        log_probs = self.model(images).float()  # (B, T, K)
        lengths = torch.tensor([self.model.output_length(int(w)) for w in batch.widths], dtype=torch.int64)
        if decoder is not None:
            return self._beam_results(decoder, log_probs, lengths)
        from .ops import ctc_greedy

        out = ctc_greedy(log_probs, lengths.to(log_probs.device))
        tokens = out.token_lengths.cpu().tolist()
        ids = out.tokens.cpu().tolist()
        logps = out.token_logprobs.float().cpu().tolist()
        path = out.path_logprob.float().cpu().tolist()
        results = []
        for b, n in enumerate(tokens):
            text = self.charset.decode(ids[b][:n])
            confs = [math.exp(v) for v in logps[b][:n]]
            if n:
                conf = math.exp(sum(logps[b][:n]) / n)
            else:
                conf = math.exp(path[b] / max(1, int(lengths[b])))
            results.append(RecognitionResult(text, float(conf), confs))
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
            if confs:
                conf = math.exp(sum(math.log(max(c, 1e-12)) for c in confs) / len(confs))
            else:
                score = float(getattr(best, "score", 0.0))
                conf = math.exp(score / max(1, len(text) or int(lengths[b])))
            results.append(RecognitionResult(text, float(min(1.0, conf)), confs))
        return results
