import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crnn_fast.models import CRNN, CRNN_CONFIGS, CRNNConfig
from crnn_fast.nn import LSTM


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def paper() -> CRNN:
    torch.manual_seed(0)
    return CRNN(37).eval()


@pytest.fixture(scope="module")
def small() -> CRNN:
    torch.manual_seed(0)
    return CRNN(37, variant="small").eval()


# -- size -------------------------------------------------------------------------------------------------


def test_paper_variant_has_the_papers_8_3M_parameters(paper):
    assert 8_200_000 < _num_params(paper) < 8_400_000
    # Pinned: a change here breaks loading existing checkpoints.
    assert _num_params(paper) == 8_331_301
    assert _num_params(CRNN(96)) == 8_361_568


def _macs(model: CRNN, width: int) -> int:
    """Multiply-accumulates of one (1, C_in, 32, width) forward, over convs, LSTMs and linear layers."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += module.weight.numel() * output.shape[-2] * output.shape[-1]
        elif isinstance(module, LSTM):
            steps = output[0].shape[1]
            weights = [w for name, w in module.named_parameters() if name.startswith("weight")]
            total += steps * sum(w.numel() for w in weights)
        else:
            total += module.weight.numel() * output.shape[1]

    counted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, LSTM, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in counted]
    with torch.no_grad():
        model(torch.zeros(1, model.in_channels, 32, width))
    for handle in handles:
        handle.remove()
    return total


def test_small_variant_is_at_least_3x_cheaper(paper, small):
    assert _num_params(small) * 3 < _num_params(paper)
    assert _macs(small, 100) * 3 < _macs(paper, 100)


# -- shapes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [4, 16, 100, 101, 257])
def test_output_shape_and_log_probs(paper, width):
    images = torch.randn(2, 1, 32, width)
    with torch.no_grad():
        features = paper.features(images)
        log_probs = paper(images)
    T = paper.output_length(width)
    assert T == width // 4 + 1
    assert features.shape == (2, T, 512)
    assert log_probs.shape == (2, T, 37)
    torch.testing.assert_close(log_probs.logsumexp(-1), torch.zeros(2, T), atol=1e-5, rtol=0)


def test_minimum_width_is_4(paper, small):
    assert paper.min_width == small.min_width == 4
    assert paper.output_length(100) == 26 and paper.output_length(128) == 33


def test_output_length_matches_the_cnn_for_many_widths(paper, small):
    with torch.no_grad():
        for width in [*range(4, 40), 128, 255, 256, 257, 258, 259]:
            T = small.features(torch.zeros(1, 1, 32, width)).shape[1]
            assert small.output_length(width) == paper.output_length(width) == T, width
        for width in [5, 6, 7, 33, 64]:
            assert paper.features(torch.zeros(1, 1, 32, width)).shape[1] == paper.output_length(width)


def test_small_variant_contract(small):
    with torch.no_grad():
        log_probs = small(torch.randn(2, 1, 32, 64))
        features = small.features(torch.randn(2, 1, 32, 64))
    assert log_probs.shape == (2, 17, 37)
    assert features.shape == (2, 17, small.feature_size) == (2, 17, 256)


def test_color_input_and_custom_config():
    config = CRNNConfig(channels=(8, 8, 16, 16, 16, 16, 16), lstm_hidden=8, batch_norm=(4, 5))
    model = CRNN(5, variant=config, in_channels=3).eval()
    assert model.variant == "custom"
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 40)).shape == (2, 11, 5)


# -- LSTM backends ----------------------------------------------------------------------------------------


def test_backend_is_passed_to_every_lstm_and_switchable():
    model = CRNN(11, variant="small", lstm_backend="ref")
    lstms = [m for m in model.modules() if isinstance(m, LSTM)]
    assert len(lstms) == 2 and all(m.backend == "ref" for m in lstms)
    assert model.set_lstm_backend("torch") is model
    assert model.lstm_backend == "torch" and all(m.backend == "torch" for m in lstms)
    model.lstm_backend = "auto"
    assert all(m.backend == "auto" for m in lstms)


def test_ref_and_torch_backends_agree_in_float64():
    model = CRNN(37, lstm_backend="ref").double().eval()
    images = torch.randn(2, 1, 32, 48, dtype=torch.float64)
    with torch.no_grad():
        ref = model(images)
        torch_out = model.set_lstm_backend("torch")(images)
    torch.testing.assert_close(ref, torch_out, atol=1e-10, rtol=0)


# -- training ---------------------------------------------------------------------------------------------


def test_ctc_training_step_gives_finite_gradients_everywhere():
    model = CRNN(37).train()
    images = torch.randn(2, 1, 32, 64)
    log_probs = model(images)  # (B, T, K)
    T = model.output_length(64)
    target_lengths = torch.tensor([5, 3])
    targets = torch.randint(1, 37, (int(target_lengths.sum()),))
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, torch.full((2,), T), target_lengths)
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.cnn.parameters())


# -- crnn.pytorch compatibility ---------------------------------------------------------------------------


class _CrnnPytorchBLSTM(nn.Module):
    """crnn.pytorch's models/crnn.py BidirectionalLSTM, time-major, verbatim in substance."""

    def __init__(self, n_in, n_hidden, n_out):
        super().__init__()
        self.rnn = nn.LSTM(n_in, n_hidden, bidirectional=True)
        self.embedding = nn.Linear(n_hidden * 2, n_out)

    def forward(self, x):
        recurrent, _ = self.rnn(x)
        T, b, h = recurrent.size()
        return self.embedding(recurrent.view(T * b, h)).view(T, b, -1)


class _CrnnPytorch(nn.Module):
    """crnn.pytorch's models/crnn.py CRNN (leakyRelu=False), to check our names and semantics match."""

    def __init__(self, nc, nclass, nh):
        super().__init__()
        ks, ps, nm = [3, 3, 3, 3, 3, 3, 2], [1, 1, 1, 1, 1, 1, 0], [64, 128, 256, 256, 512, 512, 512]
        cnn = nn.Sequential()

        def conv_relu(i, batch_normalization=False):
            cnn.add_module(f"conv{i}", nn.Conv2d(nc if i == 0 else nm[i - 1], nm[i], ks[i], 1, ps[i]))
            if batch_normalization:
                cnn.add_module(f"batchnorm{i}", nn.BatchNorm2d(nm[i]))
            cnn.add_module(f"relu{i}", nn.ReLU(True))

        conv_relu(0)
        cnn.add_module("pooling0", nn.MaxPool2d(2, 2))
        conv_relu(1)
        cnn.add_module("pooling1", nn.MaxPool2d(2, 2))
        conv_relu(2, True)
        conv_relu(3)
        cnn.add_module("pooling2", nn.MaxPool2d((2, 2), (2, 1), (0, 1)))
        conv_relu(4, True)
        conv_relu(5)
        cnn.add_module("pooling3", nn.MaxPool2d((2, 2), (2, 1), (0, 1)))
        conv_relu(6, True)
        self.cnn = cnn
        self.rnn = nn.Sequential(_CrnnPytorchBLSTM(512, nh, nh), _CrnnPytorchBLSTM(nh, nh, nclass))

    def forward(self, x):
        conv = self.cnn(x).squeeze(2).permute(2, 0, 1)  # (T, B, C)
        return self.rnn(conv)


def test_loads_crnn_pytorch_checkpoints_and_computes_the_same():
    theirs = _CrnnPytorch(1, 37, 256).eval()
    ours = CRNN(37).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    images = torch.randn(2, 1, 32, 40)
    with torch.no_grad():
        expected = theirs(images).log_softmax(-1).transpose(0, 1)
        torch.testing.assert_close(ours(images), expected, atol=1e-5, rtol=1e-5)


# -- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_classes": 1}, ValueError, "num_classes"),
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"num_classes": 37.0}, TypeError, "num_classes"),
        ({"num_classes": True}, TypeError, "num_classes"),
        ({"num_classes": 37, "variant": "large"}, ValueError, "variant.*'paper'"),
        ({"num_classes": 37, "variant": None}, ValueError, "variant"),
        ({"num_classes": 37, "lstm_backend": "cudnn"}, ValueError, "lstm_backend.*'ref'"),
        ({"num_classes": 37, "in_channels": 0}, ValueError, "in_channels"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        CRNN(**kwargs)


def test_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="channels"):
        CRNNConfig(channels=(64, 128), lstm_hidden=256)
    with pytest.raises(ValueError, match="lstm_hidden"):
        CRNNConfig(channels=(8,) * 7, lstm_hidden=0)
    with pytest.raises(ValueError, match="batch_norm"):
        CRNNConfig(channels=(8,) * 7, lstm_hidden=8, batch_norm=(7,))
    assert set(CRNN_CONFIGS) == {"paper", "small"}


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        ([[0.0]], TypeError, "images must be a torch.Tensor"),
        (torch.zeros(1, 32, 64), ValueError, "images must have 4 dimensions"),
        (torch.zeros(1, 3, 32, 64), ValueError, "images must have 1 channel"),
        (torch.zeros(1, 1, 31, 64), ValueError, "images must be 32 pixels high"),
        (torch.zeros(1, 1, 64, 64), ValueError, "images must be 32 pixels high"),
        (torch.zeros(1, 1, 32, 3), ValueError, "images must be at least 4 pixels wide"),
        (torch.zeros(1, 1, 32, 64, dtype=torch.uint8), TypeError, "images must have dtype"),
    ],
)
def test_forward_rejects_bad_images(small, images, error, match):
    with pytest.raises(error, match=match):
        small(images)
    with pytest.raises(error, match=match):
        small.features(images)


def test_bad_backend_and_width_are_named(small):
    with pytest.raises(ValueError, match="name must be one of"):
        small.set_lstm_backend("fast")
    with pytest.raises(ValueError, match="width must be >= 4"):
        small.output_length(3)
    with pytest.raises(TypeError, match="width must be an int"):
        small.output_length(64.0)


def test_widths_make_results_independent_of_padding(small):
    small = small.double().eval()
    narrow = torch.rand(1, 1, 32, 40, dtype=torch.float64)
    wide = torch.rand(1, 1, 32, 72, dtype=torch.float64)
    batch = torch.zeros(2, 1, 32, 72, dtype=torch.float64)
    batch[0, :, :, :40], batch[1] = narrow[0], wide[0]
    widths = torch.tensor([40, 72])
    lengths = small.output_lengths(widths)
    assert lengths.tolist() == [small.output_length(40), small.output_length(72)]
    out = small(batch, widths=widths)
    # The CNN's receptive field sees the padding near the right edge (that cannot be helped); the LSTMs
    # must not: the padded item equals the sequence head run on its own valid columns alone.
    features = small.features(batch)
    alone = features[:1, : lengths[0]]
    for block in small.rnn:
        alone = block(alone)
    torch.testing.assert_close(out[0, : lengths[0]], alone.log_softmax(-1)[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(out[1], small(wide)[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(out[0, : lengths[0]], small(narrow)[0], atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="widths"):
        small(batch, widths=torch.tensor([40, 80]))
