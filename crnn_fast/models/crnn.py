"""CRNN (Shi, Bai, Yao 2015): a VGG-style CNN, two bidirectional LSTMs and a per-column classifier for CTC.

Dimensions: B batch, C_in input channels, W input width, T output columns (the sequence length),
F CNN feature channels, K classes (the CTC blank at index 0 included).

Module and parameter names follow crnn.pytorch (github.com/meijieru/crnn.pytorch): `cnn.conv0`,
`cnn.batchnorm2`, ..., `rnn.0.rnn`, `rnn.0.embedding`, ..., so its checkpoints load with `load_state_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import FLOAT_DTYPES, check_tensor, is_positive_int
from ..formats.image_batch import HEIGHT as INPUT_HEIGHT
from ..nn import LSTM
from ..nn import lstm as _lstm_module

# The paper's CNN layout, shared by every variant; variants differ only in widths (CRNNConfig).
# Conv i has kernel _KERNELS[i], padding _PADDINGS[i] and stride 1.
_KERNELS = (3, 3, 3, 3, 3, 3, 2)
_PADDINGS = (1, 1, 1, 1, 1, 1, 0)
# Max-pool after conv i: (kernel, stride, padding). The last two pools halve the height but keep the
# width (stride (2, 1)), so a 32-high image ends as one row of W/4 + 1 columns: enough frames for CTC
# to emit narrow characters such as 'i' and 'l', and blanks between repeated ones.
_POOLS = {
    0: ((2, 2), (2, 2), (0, 0)),
    1: ((2, 2), (2, 2), (0, 0)),
    3: ((2, 2), (2, 1), (0, 1)),
    5: ((2, 2), (2, 1), (0, 1)),
}


@dataclass(frozen=True)
class CRNNConfig:
    """The sizes that distinguish CRNN variants; the layer layout itself is fixed (7 convs, 4 pools).

    channels: output channels of the 7 conv layers.
    lstm_hidden: hidden size per direction of both bidirectional LSTMs, and the output width of the
        first LSTM block's linear layer.
    batch_norm: 0-based indices of the conv layers followed by BatchNorm. The paper normalises after
        conv 5 and 6 (1-based); the default (2, 4, 6) is crnn.pytorch's, whose checkpoints it loads.
    """

    channels: tuple[int, ...]
    lstm_hidden: int
    batch_norm: tuple[int, ...] = (2, 4, 6)

    def __post_init__(self):
        # Tuples keep the frozen config hashable when lists are passed.
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "batch_norm", tuple(self.batch_norm))
        if len(self.channels) != len(_KERNELS) or not all(is_positive_int(c) for c in self.channels):
            raise ValueError(f"channels must be {len(_KERNELS)} positive ints, got {self.channels!r}")
        if not is_positive_int(self.lstm_hidden):
            raise ValueError(f"lstm_hidden must be a positive int, got {self.lstm_hidden!r}")
        if not all(isinstance(i, int) and 0 <= i < len(_KERNELS) for i in self.batch_norm):
            raise ValueError(f"batch_norm must hold conv indices in [0, {len(_KERNELS)}), "
                             f"got {self.batch_norm!r}")


CRNN_CONFIGS: dict[str, CRNNConfig] = {
    # The paper's network: about 8.3M parameters for 37 classes.
    "paper": CRNNConfig(channels=(64, 128, 256, 256, 512, 512, 512), lstm_hidden=256),
    # Half the widths everywhere: about 1/4 of the parameters and of the conv FLOPs.
    "small": CRNNConfig(channels=(32, 64, 128, 128, 256, 256, 256), lstm_hidden=128),
}


def check_lstm_backend_arg(backend, name: str = "lstm_backend") -> str:
    # Read LSTM_BACKENDS through the module so that backends registered later are accepted.
    valid = _lstm_module.LSTM_BACKENDS
    if not isinstance(backend, str) or backend not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}, got {backend!r}")
    return backend


class BidirectionalLSTM(nn.Module):
    """A bidirectional crnn_fast.nn.LSTM followed by a per-step linear layer (crnn.pytorch's block).

    forward(x: (B, T, input_size)) -> (B, T, output_size)
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, *, backend: str = "auto"):
        super().__init__()
        self.rnn = LSTM(input_size, hidden_size, bidirectional=True, batch_first=True, backend=backend)
        self.embedding = nn.Linear(2 * hidden_size, output_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        output, _ = self.rnn(x, lengths=lengths)
        return self.embedding(output)


def _make_cnn(in_channels: int, config: CRNNConfig) -> nn.Sequential:
    cnn = nn.Sequential()
    previous, pools = in_channels, 0
    for i, (channels, kernel, padding) in enumerate(zip(config.channels, _KERNELS, _PADDINGS)):
        cnn.add_module(f"conv{i}", nn.Conv2d(previous, channels, kernel, stride=1, padding=padding))
        if i in config.batch_norm:
            cnn.add_module(f"batchnorm{i}", nn.BatchNorm2d(channels))
        cnn.add_module(f"relu{i}", nn.ReLU(inplace=True))
        if i in _POOLS:
            kernel_size, stride, pool_padding = _POOLS[i]
            cnn.add_module(f"pooling{pools}", nn.MaxPool2d(kernel_size, stride, pool_padding))
            pools += 1
        previous = channels
    return cnn


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class CRNN(nn.Module):
    """The CRNN text recogniser: images (B, C_in, 32, W) -> CTC log-probs (B, T, K), T = W // 4 + 1.

    num_classes: K, the number of output classes INCLUDING the CTC blank at index 0
        (e.g. `len(Charset.alphanumeric_lower())` = 37).
    variant: a key of CRNN_CONFIGS ("paper", "small") or a CRNNConfig.
    in_channels: C_in, 1 for grayscale.
    lstm_backend: the crnn_fast.nn.LSTM backend of both LSTMs; change it later with set_lstm_backend().
    """

    def __init__(self, num_classes: int, *, variant: str | CRNNConfig = "paper", in_channels: int = 1,
                 lstm_backend: str = "auto"):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int):
            raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (the CTC blank plus at least one character), "
                             f"got {num_classes}")
        if isinstance(variant, CRNNConfig):
            config = variant
        elif isinstance(variant, str) and variant in CRNN_CONFIGS:
            config = CRNN_CONFIGS[variant]
        else:
            raise ValueError(f"variant must be one of {', '.join(map(repr, CRNN_CONFIGS))} or a CRNNConfig, "
                             f"got {variant!r}")
        if not is_positive_int(in_channels):
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        check_lstm_backend_arg(lstm_backend)

        self.num_classes = num_classes
        self.in_channels = in_channels
        self.variant = variant if isinstance(variant, str) else "custom"
        self.config = config
        self.cnn = _make_cnn(in_channels, config)
        hidden = config.lstm_hidden
        self.rnn = nn.Sequential(
            BidirectionalLSTM(config.channels[-1], hidden, hidden, backend=lstm_backend),
            BidirectionalLSTM(hidden, hidden, num_classes, backend=lstm_backend),
        )
        self.min_width = self._find_min_width()

    @property
    def feature_size(self) -> int:
        """F, the channels of features() (512 for the paper variant)."""
        return self.config.channels[-1]

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, variant={self.variant!r}, in_channels={self.in_channels}"

    # -- LSTM backend ------------------------------------------------------------------------------------

    def _lstms(self) -> list[LSTM]:
        return [m for m in self.modules() if isinstance(m, LSTM)]

    @property
    def lstm_backend(self) -> str:
        """The backend of the LSTMs (set_lstm_backend keeps them all the same)."""
        return self._lstms()[0].backend

    @lstm_backend.setter
    def lstm_backend(self, name: str) -> None:
        self.set_lstm_backend(name)

    def set_lstm_backend(self, name: str) -> CRNN:
        """Run every LSTM on backend `name` (one of crnn_fast.nn.lstm.LSTM_BACKENDS); returns self."""
        check_lstm_backend_arg(name, "name")
        for lstm in self._lstms():
            lstm.backend = name
        return self

    # -- sizes ------------------------------------------------------------------------------------------

    def _cnn_output_size(self, height: int, width: int) -> tuple[int, int] | None:
        """(height, width) of the CNN output for an input of this size, or None if a layer would get empty."""
        for layer in self.cnn:
            if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
                (kh, kw), (sh, sw) = _pair(layer.kernel_size), _pair(layer.stride)
                ph, pw = _pair(layer.padding)
                height = (height + 2 * ph - kh) // sh + 1
                width = (width + 2 * pw - kw) // sw + 1
                if height < 1 or width < 1:
                    return None
        return height, width

    def _find_min_width(self) -> int:
        width = 1
        while self._cnn_output_size(INPUT_HEIGHT, width) is None:
            width += 1
        return width

    def output_length(self, width: int) -> int:
        """T, the number of output columns for an input of width `width` (W // 4 + 1)."""
        if isinstance(width, bool) or not isinstance(width, int):
            raise TypeError(f"width must be an int, got {type(width).__name__}")
        if width < self.min_width:
            raise ValueError(f"width must be >= {self.min_width}, got {width}")
        return self._cnn_output_size(INPUT_HEIGHT, width)[1]

    def output_lengths(self, widths: torch.Tensor) -> torch.Tensor:
        """T per image for a batch of image widths: widths (B,) int -> (B,) int64 (W // 4 + 1)."""
        widths = torch.as_tensor(widths)
        if widths.dtype.is_floating_point or widths.dim() != 1:
            raise ValueError(f"widths must be a 1-D integer tensor, got {widths.dtype} of shape {tuple(widths.shape)}")
        if len(widths) and int(widths.min()) < self.min_width:
            raise ValueError(f"widths must be >= {self.min_width}, got {int(widths.min())}")
        return self._output_lengths(widths.to(torch.int64))

    def _output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """output_lengths without its checks: tensor ops only, so that it traces (ONNX export) for any width."""
        for layer in self.cnn:  # the same size arithmetic as _cnn_output_size, elementwise
            if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
                kw, sw, pw = _pair(layer.kernel_size)[1], _pair(layer.stride)[1], _pair(layer.padding)[1]
                lengths = (lengths + 2 * pw - kw) // sw + 1
        return lengths

    def _check_images(self, images) -> None:
        check_tensor(images, "images", dim=4, dtypes=FLOAT_DTYPES)
        _, channels, height, width = images.shape
        if channels != self.in_channels:
            raise ValueError(f"images must have {self.in_channels} channel(s) (B, {self.in_channels}, "
                             f"{INPUT_HEIGHT}, W), got shape {tuple(images.shape)}")
        if height != INPUT_HEIGHT:
            raise ValueError(f"images must be {INPUT_HEIGHT} pixels high (resize them keeping the aspect "
                             f"ratio), got shape {tuple(images.shape)}")
        if width < self.min_width:
            raise ValueError(f"images must be at least {self.min_width} pixels wide, got shape "
                             f"{tuple(images.shape)}")

    # -- forward ----------------------------------------------------------------------------------------

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The CNN features as a sequence, one step per column: images (B, C_in, 32, W) -> (B, T, F)."""
        self._check_images(images)
        conv = self.cnn(images)  # (B, F, 1, T)
        return conv.squeeze(2).permute(0, 2, 1)

    def forward(self, images: torch.Tensor, widths: torch.Tensor | None = None) -> torch.Tensor:
        """images (B, C_in, 32, W) -> log-probs (B, T, K), log_softmax over the K classes.

        widths: optional (B,) true widths of right-padded images. The LSTMs then treat the columns past
            output_lengths(widths) as padding (PackedSequence semantics), so an image's result does not
            depend on the batch it is padded into; decode only the first output_lengths(widths) frames.
        F.ctc_loss wants (T, B, K): pass `log_probs.transpose(0, 1)`.
        """
        features = self.features(images)
        lengths = None
        if widths is not None:
            widths = torch.as_tensor(widths)
            if widths.shape != (images.shape[0],) or int(widths.max()) > images.shape[-1]:
                raise ValueError(f"widths must have shape ({images.shape[0]},) with values <= the image width "
                                 f"{images.shape[-1]}, got {widths.tolist()}")
            lengths = self.output_lengths(widths).clamp(max=features.shape[1])
        x = features
        for block in self.rnn:
            x = block(x, lengths)
        return x.log_softmax(dim=-1)
