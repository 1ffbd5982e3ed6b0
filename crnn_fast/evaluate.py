"""Text recognition metrics and `crnn-fast eval`: exact match, CRNN-paper accuracy, CER.

- exact match: prediction == label, character for character;
- alnum accuracy (the CRNN paper's protocol): both sides lower-cased and reduced to [0-9a-z] before
  comparing, so case and punctuation are ignored;
- CER: total Levenshtein edits / total label characters (corpus-level, not a mean of ratios).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rapidfuzz.distance import Levenshtein

_NON_ALNUM = re.compile(r"[^0-9a-z]")


def alnum_lower(text: str) -> str:
    """`text` lower-cased with everything but 0-9 and a-z removed (the CRNN paper's comparison)."""
    return _NON_ALNUM.sub("", text.lower())


@dataclass
class Metrics:
    n: int
    exact: float          # fraction of exact matches
    alnum: float          # fraction of matches after alnum_lower on both sides
    cer: float            # character error rate: edits / label characters
    edits: int
    chars: int

    def as_dict(self) -> dict:
        return asdict(self)


def compute_metrics(predictions: Sequence[str], labels: Sequence[str]) -> Metrics:
    """Metrics of `predictions` against `labels` (same length; an empty list gives zeros)."""
    if len(predictions) != len(labels):
        raise ValueError(f"predictions and labels must have the same length, got {len(predictions)} "
                         f"and {len(labels)}")
    n = len(labels)
    exact = sum(p == t for p, t in zip(predictions, labels))
    alnum = sum(alnum_lower(p) == alnum_lower(t) for p, t in zip(predictions, labels))
    edits = sum(Levenshtein.distance(p, t) for p, t in zip(predictions, labels))
    chars = sum(len(t) for t in labels)
    return Metrics(n=n, exact=exact / n if n else 0.0, alnum=alnum / n if n else 0.0,
                   cer=edits / chars if chars else (0.0 if edits == 0 else 1.0), edits=edits, chars=chars)


def evaluate_dataset(recognizer, dataset, *, batch_size: int = 64, progress: bool = True, beam: int | None = None,
                     lexicon=None, limit: int | None = None, greedy: bool = False) -> tuple[Metrics, list[dict]]:
    """Recognise every sample of `dataset` (items (PIL image, label)) and score it.

    Returns (metrics, rows) with rows {"index", "label", "text", "confidence", "error"}; unreadable
    items count as wrong (empty prediction).
    """
    from tqdm import tqdm

    n = len(dataset) if limit is None else min(limit, len(dataset))
    rows, preds, labels = [], [], []
    bar = tqdm(total=n, disable=not progress, unit="img", desc="eval")
    start = time.perf_counter()
    for lo in range(0, n, batch_size):
        items, item_labels, errors = [], [], []
        for i in range(lo, min(n, lo + batch_size)):
            try:
                image, label = dataset[i]
                items.append(image)
                errors.append(None)
            except Exception as e:  # a bad sample is scored as wrong, not fatal
                label = dataset.label(i) if hasattr(dataset, "label") else ""
                items.append(None)
                errors.append(f"{type(e).__name__}: {e}")
            item_labels.append(label)
        good = [x for x in items if x is not None]
        results = iter(recognizer.recognize(good, batch_size=batch_size, beam=beam, lexicon=lexicon, greedy=greedy)
                       if good else [])
        for i, (image, label, err) in enumerate(zip(items, item_labels, errors)):
            if image is None:
                text, conf = "", 0.0
            else:
                r = next(results)
                text, conf, err = r.text, r.confidence, r.error
            rows.append({"index": lo + i, "label": label, "text": text, "confidence": conf, "error": err})
            preds.append(text)
            labels.append(label)
        bar.update(len(items))
    bar.close()
    metrics = compute_metrics(preds, labels)
    elapsed = time.perf_counter() - start
    for r in rows:
        r.setdefault("ms_per_image", 1000 * elapsed / max(n, 1))
    return metrics, rows
