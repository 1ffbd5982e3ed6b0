"""Saving and loading CRNN weights: a safetensors file plus a JSON sidecar (charset, config, normalisation).

Layout of a model named NAME in a folder:
    NAME.safetensors   the state_dict (float32 or float16 tensors)
    NAME.json          {"format": "crnn_fast.model", "version": 1, "charset": {...}, "config": {...},
                        "num_classes": K, "input": {...}, "training": {...}}
The shipped default lives in crnn_fast/models/weights/.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from ..data.charset import Charset
from ..formats.image_batch import INPUT_SPEC  # recorded in the sidecar so other tools can preprocess identically
from .crnn import CRNN, CRNN_CONFIGS, CRNNConfig, check_lstm_backend_arg

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "crnn_small_ascii"
_FORMAT, _VERSION = "crnn_fast.model", 1


class WeightsError(ValueError):
    """A weight file is missing, corrupt, or does not match its sidecar."""


def save_pretrained(model: CRNN, charset: Charset, path: str | os.PathLike, *, training: dict | None = None,
                    half: bool = False) -> tuple[Path, Path]:
    """Write `path`.safetensors and `path`.json (a suffix on `path` is replaced); returns both paths."""
    from safetensors.torch import save_file

    if not isinstance(model, CRNN):
        raise TypeError(f"model must be a crnn_fast CRNN, got {type(model).__name__}")
    if model.num_classes != charset.num_classes:
        raise ValueError(f"model has {model.num_classes} classes but the charset {charset.num_classes}")
    base = Path(path)
    if base.suffix in (".safetensors", ".json"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v
    weights, sidecar = base.with_suffix(".safetensors"), base.with_suffix(".json")
    save_file(state, str(weights), metadata={"format": _FORMAT})
    meta = {"format": _FORMAT, "version": _VERSION, "variant": model.variant, "config": asdict(model.config),
            "num_classes": model.num_classes, "in_channels": model.in_channels, "charset": charset.to_dict(),
            "input": INPUT_SPEC, "training": training or {}}
    sidecar.write_text(json.dumps(meta, indent=1))
    return weights, sidecar


def resolve_weights(name_or_path: str | os.PathLike | None) -> tuple[Path, Path]:
    """(weights, sidecar) for a shipped model name, a folder holding one model, or a file path."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    if isinstance(name_or_path, str) and os.sep not in name_or_path and not name_or_path.endswith(
            (".safetensors", ".json")) and not os.path.exists(name_or_path):
        base = WEIGHTS_DIR / name_or_path
        if not base.with_suffix(".safetensors").exists():
            shipped = sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors")) if WEIGHTS_DIR.is_dir() else []
            raise FileNotFoundError(f"no shipped model named {name_or_path!r} (shipped: {shipped or 'none'}); "
                                    "pass a path to a .safetensors file instead")
        return base.with_suffix(".safetensors"), base.with_suffix(".json")
    path = Path(name_or_path)
    if path.is_dir():
        found = sorted(path.glob("*.safetensors"))
        if len(found) != 1:
            raise FileNotFoundError(f"{path} must hold exactly one .safetensors file, found {len(found)}")
        path = found[0]
    if not path.exists():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix not in (".safetensors", ".json"):
        # Not swapped for the .safetensors beside it: `x.pt` is most likely a training checkpoint.
        raise WeightsError(f"{str(path)!r} is not a .safetensors weights file (or its .json sidecar); a training "
                           "checkpoint (.pt) becomes one with `crnn-fast export RUN_DIR OUT`")
    base = path.with_suffix("")
    weights, sidecar = base.with_suffix(".safetensors"), base.with_suffix(".json")
    if not weights.exists():
        raise FileNotFoundError(f"weights file {str(weights)!r} does not exist")
    if not sidecar.exists():
        raise FileNotFoundError(f"{str(weights)!r} has no JSON sidecar {str(sidecar)!r} (charset and config)")
    return weights, sidecar


def read_sidecar(sidecar: Path) -> dict:
    try:
        meta = json.loads(Path(sidecar).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{str(sidecar)!r} is not a readable JSON sidecar: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
        raise WeightsError(f"{str(sidecar)!r} is not a {_FORMAT} version {_VERSION} sidecar")
    return meta


def _sidecar_int(meta: dict, name: str, sidecar: Path, default: int | None = None) -> int:
    value = meta.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WeightsError(f"{str(sidecar)!r}: field {name!r} must be a positive int, got {value!r}")
    return value


def _sidecar_config(meta: dict, sidecar: Path) -> CRNNConfig:
    cfg = meta.get("config")
    if not isinstance(cfg, dict):
        raise WeightsError(f"{str(sidecar)!r}: field 'config' must be an object, got {cfg!r}")
    for name in ("channels", "batch_norm"):
        if name in cfg and not isinstance(cfg[name], list):
            raise WeightsError(f"{str(sidecar)!r}: field 'config.{name}' must be a list of ints, got {cfg[name]!r}")
    if "channels" not in cfg or "lstm_hidden" not in cfg:
        raise WeightsError(f"{str(sidecar)!r}: field 'config' needs 'channels' and 'lstm_hidden', got {sorted(cfg)}")
    try:
        return CRNNConfig(channels=tuple(cfg["channels"]), lstm_hidden=cfg["lstm_hidden"],
                          batch_norm=tuple(cfg.get("batch_norm", (2, 4, 6))))
    except ValueError as e:  # CRNNConfig names the field
        raise WeightsError(f"{str(sidecar)!r}: bad field in 'config': {e}") from None


def _file_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a safetensors file, from its header alone (no tensor is read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{str(weights)!r} is not a valid safetensors file: {e}") from None


def load_decoding(sidecar: str | os.PathLike, meta: dict) -> dict | None:
    """The sidecar's default decoding, {"beam_width", "lm" (a CharNgramLM), "lm_weight", "insertion_bonus"},
    or None when it has none (greedy). `meta` is the sidecar file `sidecar` read; the LM file it names lies
    beside it.

        "decoding": {"beam_width": 16, "lm": "NAME.charlm", "lm_weight": 0.3, "insertion_bonus": 1.0}
    """
    decoding = meta.get("decoding")
    if not decoding:
        return None
    sidecar = Path(sidecar)
    if not isinstance(decoding, dict):
        raise WeightsError(f"{str(sidecar)!r}: field 'decoding' must be an object, got {type(decoding).__name__}")
    out = {}
    for name, kind in (("beam_width", int), ("lm_weight", float), ("insertion_bonus", float)):
        value = decoding.get(name)
        wrong_type = isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float))
        if wrong_type:
            raise WeightsError(f"{str(sidecar)!r}: field 'decoding.{name}' must be a {kind.__name__}, got {value!r}")
        out[name] = kind(value)
    lm_name = decoding.get("lm")
    if not isinstance(lm_name, str) or Path(lm_name).name != lm_name or not lm_name:
        raise WeightsError(f"{str(sidecar)!r}: field 'decoding.lm' must be a file name beside it, got {lm_name!r}")
    lm_path = sidecar.parent / lm_name
    if not lm_path.is_file():
        raise WeightsError(f"{str(sidecar)!r} names the language model {lm_name!r}, which is not beside it")
    from ..formats.lm import CharNgramLM

    try:
        out["lm"] = CharNgramLM.load_tensors(lm_path)
    except ValueError as e:
        raise WeightsError(str(e)) from None
    return out


def load_pretrained(name_or_path: str | os.PathLike | None = None, *, map_location="cpu",
                    lstm_backend: str = "auto") -> tuple[CRNN, Charset, dict]:
    """Load (model in eval mode, charset, sidecar dict); raises WeightsError on corrupt or mismatched files.

    The sidecar's model is first built on the meta device and its shapes checked against the file's header,
    so that a sidecar describing a huge model fails before anything is allocated."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_lstm_backend_arg(lstm_backend)
    weights, sidecar = resolve_weights(name_or_path)
    meta = read_sidecar(sidecar)
    try:
        charset = Charset.from_dict(meta["charset"])
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{str(sidecar)!r} has a bad charset: {e}") from None
    config = _sidecar_config(meta, sidecar)
    num_classes = _sidecar_int(meta, "num_classes", sidecar)
    in_channels = _sidecar_int(meta, "in_channels", sidecar, default=1)
    if num_classes != charset.num_classes:
        raise WeightsError(f"{str(sidecar)!r}: num_classes {num_classes} != charset's {charset.num_classes}")
    variant = meta.get("variant")
    variant = variant if variant in CRNN_CONFIGS and CRNN_CONFIGS[variant] == config else config

    def build(device):
        with torch.device(device):
            return CRNN(num_classes, variant=variant, in_channels=in_channels, lstm_backend=lstm_backend)

    try:
        expected = build("meta").state_dict()
    except (RuntimeError, ValueError) as e:  # sizes whose storage would overflow
        raise WeightsError(f"{str(sidecar)!r}: its config does not describe a model that can be built: {e}") from None
    shapes = _file_shapes(weights)
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong = [f"{k}: file {shapes[k]} vs model {tuple(v.shape)}" for k, v in expected.items()
             if k in shapes and shapes[k] != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:3]}")
        raise WeightsError(f"{str(weights)!r} does not match its sidecar's model: {'; '.join(parts)}")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{str(weights)!r} is not a valid safetensors file: {e}") from None
    for k, v in state.items():
        # A cast between integer and float types would turn the stored numbers into other numbers, silently.
        if v.is_floating_point() != expected[k].is_floating_point() or v.is_complex() or v.dtype == torch.bool:
            kind = "a floating-point" if expected[k].is_floating_point() else "an integer"
            raise WeightsError(f"{str(weights)!r}: tensor {k!r} has dtype {str(v.dtype).replace('torch.', '')}, "
                               f"expected {kind} dtype")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise WeightsError(f"{str(weights)!r}: tensor {k!r} holds NaN or inf")
    model = build("cpu")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    model.eval()
    return model.to(map_location), charset, meta
