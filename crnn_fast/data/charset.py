"""Charset: the mapping between characters and the class ids of a CTC model, with the blank at id 0."""

from __future__ import annotations

import json
import operator
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

_JSON_FORMAT = "crnn_fast.charset"
_JSON_VERSION = 1
# Cap on the offending characters quoted in an error, so a long foreign text gives a readable message.
_MAX_REPORTED = 10


class Charset:
    """Characters <-> class ids for CTC: id 0 is the blank, characters get ids 1..N in the given order.

    characters: a str, or a sequence of single-character strings (one Unicode code point each).
    len(charset) and num_classes are N + 1, the blank included: the `num_classes` of the model.
    """

    def __init__(self, characters: str | Sequence[str]):
        chars = _check_characters(characters)
        self._chars: tuple[str, ...] = chars
        self._ids: dict[str, int] = {c: i for i, c in enumerate(chars, start=1)}

    # -- constructors -----------------------------------------------------------------------------------

    @classmethod
    def printable_ascii(cls) -> Charset:
        """The 95 printable ASCII characters in code-point order, ' ' (32) to '~' (126): 96 classes."""
        return cls("".join(chr(c) for c in range(32, 127)))

    @classmethod
    def alphanumeric_lower(cls) -> Charset:
        """The CRNN paper's 36 characters, '0'-'9' then 'a'-'z': 37 classes."""
        return cls("0123456789abcdefghijklmnopqrstuvwxyz")

    # -- properties -------------------------------------------------------------------------------------

    @property
    def characters(self) -> str:
        """The N characters in id order (the character of id i is characters[i - 1])."""
        return "".join(self._chars)

    @property
    def blank(self) -> int:
        """The id of the CTC blank: always 0."""
        return 0

    @property
    def num_classes(self) -> int:
        """N + 1: the characters plus the CTC blank."""
        return len(self._chars) + 1

    @property
    def space(self) -> int | None:
        """The id of ' ', or None if the charset has no space."""
        return self._ids.get(" ")

    def __len__(self) -> int:
        return self.num_classes

    def __contains__(self, character) -> bool:
        return character in self._ids

    def __eq__(self, other) -> bool:
        if not isinstance(other, Charset):
            return NotImplemented
        return self._chars == other._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        return f"Charset({self.characters!r})"

    # -- encoding ---------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """The ids of the characters of `text`, one per character (no blanks)."""
        return self._encode(text, "text")

    def _encode(self, text, name: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str, got {type(text).__name__}")
        ids = [self._ids.get(c, 0) for c in text]
        if 0 in ids:
            unknown = [(i, c) for i, c in enumerate(text) if c not in self._ids]
            shown = ", ".join(f"{c!r} at {i}" for i, c in unknown[:_MAX_REPORTED])
            more = f" and {len(unknown) - _MAX_REPORTED} more" if len(unknown) > _MAX_REPORTED else ""
            raise ValueError(f"{name} contains characters not in the charset: {shown}{more}")
        return ids

    def encode_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch for F.ctc_loss in its concatenated-targets form.

        texts: B strings.
        Returns targets (sum(lengths),) int64, every text's ids one after the other, and
        lengths (B,) int64, the number of ids of each text: pass them as `targets` and `target_lengths`.
        """
        if isinstance(texts, str) or not isinstance(texts, Iterable):
            raise TypeError(f"texts must be a sequence of str (use encode() for one text), "
                            f"got {type(texts).__name__}")
        encoded = [self._encode(text, f"texts[{i}]") for i, text in enumerate(texts)]
        targets = torch.tensor([i for ids in encoded for i in ids], dtype=torch.int64)
        lengths = torch.tensor([len(ids) for ids in encoded], dtype=torch.int64)
        return targets, lengths

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text of the character ids `ids` (a sequence of ints or a 1-D integer tensor), one char per id.

        It does not collapse CTC paths: the blank (0) and ids outside 1..N are errors, so decode the
        output of a CTC decoder (crnn_fast.decoding), not raw per-frame argmaxes.
        """
        values = _ids_to_list(ids)
        bad = [(i, v) for i, v in enumerate(values) if not 0 < v <= len(self._chars)]
        if bad:
            shown = ", ".join(f"{v} at {i}" for i, v in bad[:_MAX_REPORTED])
            more = f" and {len(bad) - _MAX_REPORTED} more" if len(bad) > _MAX_REPORTED else ""
            raise ValueError(f"ids must be character ids in [1, {len(self._chars)}] (0 is the CTC blank; "
                             f"collapse CTC output with a decoder first), got {shown}{more}")
        return "".join(self._chars[v - 1] for v in values)

    # -- serialisation ----------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-compatible dict; Charset.from_dict(charset.to_dict()) == charset."""
        return {"format": _JSON_FORMAT, "version": _JSON_VERSION, "blank": self.blank,
                "characters": list(self._chars)}

    @classmethod
    def from_dict(cls, data: dict) -> Charset:
        """The charset of a to_dict() dict."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        fmt, version = data.get("format", _JSON_FORMAT), data.get("version", _JSON_VERSION)
        if fmt != _JSON_FORMAT or version != _JSON_VERSION:
            raise ValueError(f"data is not a {_JSON_FORMAT} version {_JSON_VERSION} dict: format "
                             f"{data.get('format')!r}, version {data.get('version')!r}")
        if data.get("blank", 0) != 0:
            raise ValueError(f"data has blank {data['blank']!r}; Charset only supports the blank at id 0")
        if "characters" not in data:
            raise ValueError("data has no 'characters' entry")
        return cls(data["characters"])

    def to_json(self, **json_kwargs) -> str:
        """The charset as JSON text (e.g. to save next to the model weights); keyword args go to json.dumps.

        Characters are stored as a list, so any character (quotes, newlines, emoji) survives the round trip.
        """
        return json.dumps(self.to_dict(), **json_kwargs)

    @classmethod
    def from_json(cls, text: str) -> Charset:
        """The charset saved by to_json()."""
        if not isinstance(text, (str, bytes, bytearray)):
            raise TypeError(f"text must be JSON text (str), got {type(text).__name__}")
        return cls.from_dict(json.loads(text))


def _check_characters(characters) -> tuple[str, ...]:
    if isinstance(characters, str):
        chars = tuple(characters)
    elif isinstance(characters, Sequence) and not isinstance(characters, (bytes, bytearray)):
        chars = tuple(characters)
        not_single = [(i, c) for i, c in enumerate(chars) if not (isinstance(c, str) and len(c) == 1)]
        if not_single:
            shown = ", ".join(f"{c!r} at {i}" for i, c in not_single[:_MAX_REPORTED])
            raise ValueError(f"characters must be single-character strings, got {shown}")
    else:
        # A set or dict has no order to number the characters by.
        raise TypeError(f"characters must be a str or a sequence of single-character strings, "
                        f"got {type(characters).__name__}")
    if not chars:
        raise ValueError("characters must not be empty")
    duplicates = [c for c, n in Counter(chars).items() if n > 1]
    if duplicates:
        raise ValueError(f"characters must be unique, got duplicates {', '.join(map(repr, duplicates))}")
    return chars


def _ids_to_list(ids) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"ids must be integers, got dtype {str(ids.dtype).replace('torch.', '')}")
        return ids.tolist()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(f"ids must be a sequence of ints or a 1-D integer tensor, got {type(ids).__name__}")
    values = []
    for i, v in enumerate(ids):
        if isinstance(v, bool):
            raise TypeError(f"ids[{i}] must be an int, got bool")
        try:
            values.append(operator.index(v))  # accepts numpy integers, rejects floats
        except TypeError:
            raise TypeError(f"ids[{i}] must be an int, got {type(v).__name__}") from None
    return values
