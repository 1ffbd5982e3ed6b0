"""ONNX export of a CRNN, and the onnxruntime runner that lets Recognizer use the exported file.

Dimensions: B batch, W padded image width, T = W // 4 + 1 frames, K classes (blank 0 included),
I LSTM input features, H LSTM hidden size, D directions.

Files of a model named NAME:
    NAME.onnx   the network: images + true widths -> log-probs + frame lengths (ONNX_CONTRACT below)
    NAME.json   the sidecar of models.pretrained (format "crnn_fast.model": charset, config, preprocessing)
                plus an "onnx" section naming the graph's contract, opset and precision. A safetensors file
                of the same model can share it: its loader ignores the "onnx" section.

The graph (contract "crnn_fast.crnn/images+widths", version 1):
    inputs   images    float32 (B, 1, 32, W)  preprocessed as the sidecar's "input" says, right-padded
             widths    int64 (B,)             each image's true width before padding, min_width <= widths <= W
    outputs  log_probs float32 (B, T, K)      log_softmax over K; frames past `lengths` are padding
             lengths   int64 (B,)             valid frames per image, output_lengths(widths)
The widths reach the ONNX LSTM nodes as sequence_lens, which have PackedSequence semantics (the reverse
direction starts at each sequence's own last step), so padding a batch changes no result, as in PyTorch.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.charset import Charset
from ..nn import LSTM
from .crnn import CRNN, INPUT_HEIGHT, CRNNConfig
from .pretrained import _FORMAT, _VERSION, INPUT_SPEC, WeightsError, read_sidecar

ONNX_CONTRACT = {"name": "crnn_fast.crnn/images+widths", "version": 1}
INPUT_NAMES = ("images", "widths")
OUTPUT_NAMES = ("log_probs", "lengths")
DEFAULT_OPSET = 17
# ONNX's LSTM needs opset 7 and LogSoftmax's current (last-axis) semantics 13; the TorchScript-based exporter,
# the one that emits our LSTM nodes, stops at 20.
MIN_OPSET, MAX_OPSET = 13, 20
_INSTALL_HINT = 'pip install "crnn_fast[onnx]"'


class OnnxModelError(WeightsError):
    """An ONNX model file that is corrupt, lacks a usable sidecar, or has another input/output contract."""


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(f"running an ONNX model needs onnxruntime: {_INSTALL_HINT} ({e})") from None
    return onnxruntime


# -- export -------------------------------------------------------------------------------------------------------


def _onnx_gates(w: torch.Tensor) -> torch.Tensor:
    """PyTorch stacks the LSTM gates i, f, g, o along dim 0; ONNX stacks i, o, f, c (c is PyTorch's g)."""
    i, f, g, o = w.chunk(4, 0)
    return torch.cat([i, o, f, g], 0)


class _OnnxLSTMLayer(torch.autograd.Function):
    """One layer of an LSTM as one ONNX LSTM node: x (T, B, I), sequence_lens (B,) int32 -> Y (T, D, B, H).

    The TorchScript exporter records the node from symbolic(); forward() only gives the tracer a tensor of
    the output's shape and dtype (its values are never read: the node replaces them in the graph)."""

    @staticmethod
    def forward(ctx, x, W, R, B, sequence_lens, hidden_size: int, direction: str):
        D = 2 if direction == "bidirectional" else 1
        return x.new_zeros(x.shape[0], D, x.shape[1], hidden_size)

    @staticmethod
    def symbolic(g, x, W, R, B, sequence_lens, hidden_size: int, direction: str):
        y, _h_n, _c_n = g.op("LSTM", x, W, R, B, sequence_lens, hidden_size_i=hidden_size, direction_s=direction,
                             outputs=3)
        return y


class _OnnxLSTM(nn.Module):
    """A batch-first crnn_fast.nn.LSTM (any backend, any number of layers) as ONNX LSTM nodes, one per layer.

    forward(x: (B, T, I), lengths: (B,) int64) -> (B, T, D * H), zero past each length (as the module gives).
    Outside torch.onnx.export it runs the original module, so the export wrapper also runs eagerly."""

    def __init__(self, lstm: LSTM):
        super().__init__()
        if not lstm.batch_first:
            raise ValueError("only batch_first LSTMs are exported (CRNN's are)")
        if not lstm.bias:
            raise ValueError("only LSTMs with bias=True are exported (CRNN's are)")
        self.lstm = lstm
        self.hidden_size = lstm.hidden_size
        self.direction = "bidirectional" if lstm.bidirectional else "forward"
        suffixes = [""] + (["_reverse"] if lstm.bidirectional else [])

        def stacked(name: str, layer: int) -> torch.Tensor:  # (D, 4H, ...) in ONNX's gate order
            return torch.stack([_onnx_gates(getattr(lstm, f"{name}_l{layer}{s}").detach()) for s in suffixes])

        for layer in range(lstm.num_layers):
            self.register_buffer(f"W{layer}", stacked("weight_ih", layer))  # (D, 4H, I)
            self.register_buffer(f"R{layer}", stacked("weight_hh", layer))  # (D, 4H, H)
            # ONNX's B is [W_b, R_b] per direction: (D, 8H).
            self.register_buffer(f"B{layer}", torch.cat([stacked("bias_ih", layer), stacked("bias_hh", layer)], 1))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return self.lstm(x, lengths=lengths)[0]
        sequence_lens = lengths.to(torch.int32)  # ONNX LSTM takes int32 lengths only
        y = x.transpose(0, 1)  # (T, B, I)
        for layer in range(self.lstm.num_layers):
            out = _OnnxLSTMLayer.apply(y, getattr(self, f"W{layer}"), getattr(self, f"R{layer}"),
                                       getattr(self, f"B{layer}"), sequence_lens, self.hidden_size, self.direction)
            y = out.transpose(1, 2).flatten(2)  # (T, D, B, H) -> (T, B, D * H)
        return y.transpose(0, 1)


class _ExportedCRNN(nn.Module):
    """CRNN.forward(images, widths) in the form torch.onnx.export traces: no Python-side checks or data-dependent
    control flow, LSTMs as ONNX LSTM nodes. images (B, C_in, 32, W), widths (B,) int64 ->
    (log_probs (B, T, K) float32, lengths (B,) int64). `dtype` is the precision of the network inside;
    log_softmax always runs in float32, as under autocast, so that fp16 keeps the log-probs' resolution."""

    def __init__(self, model: CRNN, dtype: torch.dtype):
        super().__init__()
        model = copy.deepcopy(model).cpu().float().eval()
        self.dtype = dtype
        self.crnn = model.to(dtype)
        self.lstms = nn.ModuleList([_OnnxLSTM(block.rnn) for block in self.crnn.rnn])

    def forward(self, images: torch.Tensor, widths: torch.Tensor):
        conv = self.crnn.cnn(images.to(self.dtype))  # (B, F, 1, T)
        x = conv.squeeze(2).permute(0, 2, 1)  # (B, T, F)
        # CRNN.forward clamps to T too; with widths <= W it changes nothing.
        lengths = torch.minimum(self.crnn._output_lengths(widths), torch._shape_as_tensor(x)[1])
        for block, lstm in zip(self.crnn.rnn, self.lstms):
            x = block.embedding(lstm(x, lengths))
        return x.float().log_softmax(dim=-1), lengths


def _onnx_meta(model: CRNN, charset: Charset, *, opset: int, half: bool, training: dict | None) -> dict:
    from dataclasses import asdict

    return {"format": _FORMAT, "version": _VERSION, "variant": model.variant, "config": asdict(model.config),
            "num_classes": model.num_classes, "in_channels": model.in_channels, "charset": charset.to_dict(),
            "input": INPUT_SPEC, "training": training or {},
            "onnx": {"contract": ONNX_CONTRACT, "opset": opset, "precision": "fp16" if half else "fp32",
                     "min_width": model.min_width,
                     "inputs": {"images": {"dtype": "float32", "shape": ["B", model.in_channels, INPUT_HEIGHT, "W"]},
                                "widths": {"dtype": "int64", "shape": ["B"]}},
                     "outputs": {"log_probs": {"dtype": "float32", "shape": ["B", "T", model.num_classes]},
                                 "lengths": {"dtype": "int64", "shape": ["B"]}}}}


def _check_shared_sidecar(sidecar: Path, meta: dict) -> None:
    """NAME.json may already serve NAME.safetensors: overwrite it only with a sidecar of the same model."""
    weights = sidecar.with_suffix(".safetensors")
    if not (sidecar.exists() and weights.exists()):
        return
    try:
        old = read_sidecar(sidecar)
    except WeightsError:
        return
    keys = ("config", "num_classes", "in_channels", "charset", "input")
    if any(old.get(k) != json.loads(json.dumps(meta[k])) for k in keys):  # as JSON: tuples read back as lists
        raise ValueError(f"path: {str(sidecar)!r} is the sidecar of {str(weights)!r}, a different model; "
                         "export the ONNX file under another name")


def export_onnx(model: CRNN, path: str | os.PathLike, *, charset: Charset, opset: int = DEFAULT_OPSET,
                half: bool = False, training: dict | None = None, check: bool = True) -> tuple[Path, Path]:
    """Export `model` to `path` (.onnx; a missing suffix is added) and its JSON sidecar beside it (.json).

    The graph: images (B, 1, 32, W) float32 and true widths (B,) int64 -> log-probs (B, T, K) float32 and
    frame lengths (B,) int64, dynamic in B and W (the module docstring has the contract). Every LSTM exports
    as ONNX LSTM nodes whatever its crnn_fast backend. half: float16 weights and activations inside (the file
    is half as large); inputs and outputs stay float32 and log_softmax runs in float32.
    training: extra facts recorded in the sidecar. check: run onnx.checker (full check) on the written file.
    Returns (onnx path, sidecar path).
    """
    if not isinstance(model, CRNN):
        raise TypeError(f"model must be a crnn_fast CRNN, got {type(model).__name__}")
    if not isinstance(charset, Charset):
        raise TypeError(f"charset must be a crnn_fast Charset, got {type(charset).__name__}")
    if model.num_classes != charset.num_classes:
        raise ValueError(f"model has {model.num_classes} classes but charset has {charset.num_classes}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be an int in [{MIN_OPSET}, {MAX_OPSET}], got {opset!r}")
    if not isinstance(half, bool):
        raise TypeError(f"half must be a bool, got {type(half).__name__}")
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"ONNX export needs the onnx package: {_INSTALL_HINT} ({e})") from None

    path = Path(path)
    if path.suffix != ".onnx":
        path = path.with_name(path.name + ".onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = path.with_suffix(".json")
    meta = _onnx_meta(model, charset, opset=opset, half=half, training=training)
    _check_shared_sidecar(sidecar, meta)
    graph = _ExportedCRNN(model, torch.float16 if half else torch.float32)
    # A traced example: two images of different widths, so nothing width- or batch-specific is baked in.
    width = max(64, model.min_width)
    images = torch.zeros(2, model.in_channels, INPUT_HEIGHT, width)
    widths = torch.tensor([width, max(model.min_width, width // 2)], dtype=torch.int64)
    dynamic = {"images": {0: "B", 3: "W"}, "widths": {0: "B"}, "log_probs": {0: "B", 1: "T"}, "lengths": {0: "B"}}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter is deprecated in favour of torch.export's, which cannot record our LSTM
        # nodes (its torch.onnx.ops.symbolic does not trace here): chosen on purpose, so its warning is noise.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(graph, (images, widths), str(path), dynamo=False, opset_version=opset,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic,
                          do_constant_folding=True)
    if check:
        onnx.checker.check_model(str(path), full_check=True)
    sidecar.write_text(json.dumps(meta, indent=1))
    return path, sidecar


# -- loading and running ------------------------------------------------------------------------------------------


def resolve_onnx_device(device, available_providers: list[str]) -> torch.device:
    """The device an ONNX model runs on: "auto" is CUDA when both torch and onnxruntime have it, else the CPU."""
    has_cuda_ep = "CUDAExecutionProvider" in available_providers
    if device is None or device == "auto":
        return torch.device("cuda" if has_cuda_ep and torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r} ({e})") from None
    if device.type == "cuda":
        if not has_cuda_ep:
            raise ValueError(f"device {str(device)!r}: this onnxruntime has no CUDAExecutionProvider (providers: "
                             f"{available_providers}); install onnxruntime-gpu, or use device='cpu'")
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was requested but CUDA is not available here")
    elif device.type != "cpu":
        raise ValueError(f"device must be a CPU or CUDA device for an ONNX model, got {str(device)!r}")
    return device


def _check_contract(onnx_path: Path, sidecar: Path, meta: dict) -> dict:
    section = meta.get("onnx")
    if not isinstance(section, dict):
        raise OnnxModelError(f"{str(sidecar)!r} has no 'onnx' section: it describes safetensors weights, not "
                             f"{str(onnx_path)!r} (write both with crnn_fast.export_onnx / crnn-fast export-onnx)")
    if section.get("contract") != ONNX_CONTRACT:
        raise OnnxModelError(f"{str(onnx_path)!r} has input contract {section.get('contract')!r} (per "
                             f"{str(sidecar)!r}); this crnn_fast runs {ONNX_CONTRACT!r}: re-export the model")
    if meta.get("input") != INPUT_SPEC:
        raise OnnxModelError(f"{str(sidecar)!r}: the model expects the preprocessing {meta.get('input')!r}, "
                             f"Recognizer does {INPUT_SPEC!r}")
    return section


def _check_session(session, onnx_path: Path, in_channels: int, num_classes: int) -> None:
    """The graph itself must have the contract's inputs and outputs, whatever the sidecar claims."""
    expected_in = [("images", "tensor(float)", 4), ("widths", "tensor(int64)", 1)]
    expected_out = [("log_probs", "tensor(float)", 3), ("lengths", "tensor(int64)", 1)]

    def describe(args):
        return [(a.name, a.type, a.shape) for a in args]

    inputs, outputs = session.get_inputs(), session.get_outputs()
    got_in = [(a.name, a.type, len(a.shape)) for a in inputs]
    got_out = [(a.name, a.type, len(a.shape)) for a in outputs]
    images_dims = inputs[0].shape[1:3] if got_in == expected_in else None
    classes = outputs[0].shape[2] if got_out == expected_out else None
    if got_in != expected_in or images_dims != [in_channels, INPUT_HEIGHT]:
        raise OnnxModelError(f"{str(onnx_path)!r} has inputs {describe(inputs)}; expected images float32 (B, "
                             f"{in_channels}, {INPUT_HEIGHT}, W) and widths int64 (B,) (crnn_fast.export_onnx's "
                             "contract)")
    if got_out != expected_out or classes != num_classes:
        raise OnnxModelError(f"{str(onnx_path)!r} has outputs {describe(outputs)}; expected log_probs float32 "
                             f"(B, T, {num_classes}) and lengths int64 (B,) for its sidecar's {num_classes} classes")


class OnnxCRNN:
    """A CRNN network exported by export_onnx, run in onnxruntime, with the part of CRNN's interface that
    Recognizer uses: num_classes, in_channels, min_width, output_lengths(widths), and
    __call__(images (B, C_in, 32, W) float, widths (B,) int) -> log-probs (B, T, K) float32 on `device`.

    Build it with load_onnx. threads: onnxruntime's intra-op threads (default: torch.get_num_threads(), so that
    both runtimes get the same CPU share)."""

    def __init__(self, path: str | os.PathLike, meta: dict, *, device="auto", threads: int | None = None):
        ort = _import_onnxruntime()
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")
        self.path = Path(path)
        self.meta = meta
        self.num_classes = int(meta["num_classes"])
        self.in_channels = int(meta.get("in_channels", 1))
        self.precision = meta["onnx"].get("precision", "fp32")
        self.device = resolve_onnx_device(device, ort.get_available_providers())
        self.threads = threads or torch.get_num_threads()
        cfg = meta["config"]
        config = CRNNConfig(channels=tuple(cfg["channels"]), lstm_hidden=cfg["lstm_hidden"],
                            batch_norm=tuple(cfg.get("batch_norm", (2, 4, 6))))
        # The frame arithmetic (min_width, output_lengths) comes from CRNN itself, on the meta device: no memory.
        with torch.device("meta"):
            self._shapes = CRNN(self.num_classes, variant=config, in_channels=self.in_channels)
        self.min_width = self._shapes.min_width

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if self.precision == "fp16" and self.device.type == "cpu":
            # onnxruntime 1.32's CPU layout optimisations (level ALL) segfault while building the session of our
            # float16 graph (measured); level EXTENDED loads and runs it.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        if self.device.type == "cuda":
            providers = [("CUDAExecutionProvider", {"device_id": self.device.index or 0}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for unreadable or invalid graphs
            raise OnnxModelError(f"{str(self.path)!r} is not a valid ONNX model: {type(e).__name__}: {e}") from None
        _check_session(self.session, self.path, self.in_channels, self.num_classes)

    def __repr__(self) -> str:
        return (f"OnnxCRNN({str(self.path)!r}, num_classes={self.num_classes}, precision={self.precision!r}, "
                f"device={str(self.device)!r}, providers={self.session.get_providers()})")

    def output_lengths(self, widths: torch.Tensor) -> torch.Tensor:
        """T per image for a batch of image widths: widths (B,) int -> (B,) int64, as CRNN.output_lengths."""
        return self._shapes.output_lengths(widths)

    def __call__(self, images: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
            raise ValueError(f"images must be a float tensor (B, {self.in_channels}, {INPUT_HEIGHT}, W), got "
                             f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}")
        B, C, H, W = images.shape
        if C != self.in_channels or H != INPUT_HEIGHT or W < self.min_width or B == 0:
            raise ValueError(f"images must have shape (B >= 1, {self.in_channels}, {INPUT_HEIGHT}, W >= "
                             f"{self.min_width}), got {tuple(images.shape)}")
        widths = torch.as_tensor(widths)
        if widths.dtype.is_floating_point or widths.shape != (B,):
            raise ValueError(f"widths must be an integer tensor of shape ({B},), got {widths.dtype} "
                             f"{tuple(widths.shape)}")
        if int(widths.min()) < self.min_width or int(widths.max()) > W:
            raise ValueError(f"widths must lie in [{self.min_width}, {W}] (the padded width), got {widths.tolist()}")
        feed = {"images": np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy()),
                "widths": np.ascontiguousarray(widths.to("cpu", torch.int64).numpy())}
        log_probs, _lengths = self.session.run(list(OUTPUT_NAMES), feed)
        return torch.from_numpy(log_probs).to(self.device)


def load_onnx(path: str | os.PathLike, *, device="auto", threads: int | None = None
              ) -> tuple[OnnxCRNN, Charset, dict]:
    """(runner, charset, sidecar dict) for an .onnx file written by export_onnx and its NAME.json sidecar.

    Raises FileNotFoundError for a missing file or sidecar, OnnxModelError (a models.pretrained.WeightsError) for a
    sidecar or graph with another contract or a file onnxruntime cannot load, ImportError without onnxruntime."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"path must name an .onnx file, got {str(path)!r}")
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist")
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{str(path)!r} has no JSON sidecar {str(sidecar)!r} (charset and input contract); "
                                "export_onnx / crnn-fast export-onnx write it beside the .onnx file")
    meta = read_sidecar(sidecar)
    _check_contract(path, sidecar, meta)
    try:
        charset = Charset.from_dict(meta["charset"])
        num_classes = int(meta["num_classes"])
    except (KeyError, TypeError, ValueError) as e:
        raise OnnxModelError(f"{str(sidecar)!r} has a bad charset: {e}") from None
    if num_classes != charset.num_classes:
        raise OnnxModelError(f"{str(sidecar)!r}: num_classes {num_classes} != charset's {charset.num_classes}")
    try:
        runner = OnnxCRNN(path, meta, device=device, threads=threads)
    except (KeyError, TypeError) as e:
        raise OnnxModelError(f"{str(sidecar)!r} has a bad config: {e}") from None
    return runner, charset, meta


def is_onnx_path(name_or_path) -> bool:
    return isinstance(name_or_path, (str, os.PathLike)) and os.fspath(name_or_path).endswith(".onnx")


__all__ = ["export_onnx", "load_onnx", "OnnxCRNN", "OnnxModelError", "ONNX_CONTRACT", "is_onnx_path"]
