import pytest
import torch

from crnn_fast.reference import lstm_ref


def _torch_lstm(I, H, layers, bidirectional, batch_first, bias=True):
    return torch.nn.LSTM(I, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                         bias=bias).double()


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_torch_lstm(layers, bidirectional, batch_first, with_hx, bias):
    B, T, I, H = 3, 7, 5, 6
    lstm = _torch_lstm(I, H, layers, bidirectional, batch_first, bias)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.float64)
    D = 2 if bidirectional else 1
    hx = (torch.randn(layers * D, B, H, dtype=torch.float64), torch.randn(layers * D, B, H, dtype=torch.float64))
    hx = hx if with_hx else None
    expected, (h_exp, c_exp) = lstm(x, hx)
    out, (h, c) = lstm_ref(x, lstm._flat_weights, hx, num_layers=layers, bidirectional=bidirectional,
                           batch_first=batch_first)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(h, h_exp, atol=1e-10, rtol=0)
    torch.testing.assert_close(c, c_exp, atol=1e-10, rtol=0)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_match_packed_sequence(layers, bidirectional, batch_first):
    B, T, I, H = 4, 9, 3, 5
    lstm = _torch_lstm(I, H, layers, bidirectional, batch_first)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.float64)
    lengths = torch.tensor([9, 1, 5, 0 + 3])
    D = 2 if bidirectional else 1
    hx = (torch.randn(layers * D, B, H, dtype=torch.float64), torch.randn(layers * D, B, H, dtype=torch.float64))
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    packed_out, (h_exp, c_exp) = lstm(packed, hx)
    expected, _ = torch.nn.utils.rnn.pad_packed_sequence(packed_out, batch_first=batch_first, total_length=T)
    out, (h, c) = lstm_ref(x, lstm._flat_weights, hx, num_layers=layers, bidirectional=bidirectional,
                           batch_first=batch_first, lengths=lengths)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(h, h_exp, atol=1e-10, rtol=0)
    torch.testing.assert_close(c, c_exp, atol=1e-10, rtol=0)


def test_zero_length_sequence_keeps_initial_state():
    lstm = _torch_lstm(2, 3, 1, True, True)
    x = torch.randn(2, 4, 2, dtype=torch.float64)
    hx = (torch.randn(2, 2, 3, dtype=torch.float64), torch.randn(2, 2, 3, dtype=torch.float64))
    out, (h, c) = lstm_ref(x, lstm._flat_weights, hx, bidirectional=True, batch_first=True,
                           lengths=torch.tensor([4, 0]))
    assert torch.all(out[1] == 0)
    torch.testing.assert_close(h[:, 1], hx[0][:, 1], atol=0, rtol=0)
    torch.testing.assert_close(c[:, 1], hx[1][:, 1], atol=0, rtol=0)


def test_gradients_match_torch_lstm():
    lstm = _torch_lstm(4, 5, 2, True, True)
    x = torch.randn(3, 6, 4, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(3, 6, 10, dtype=torch.float64)
    out, _ = lstm(x)
    expected = torch.autograd.grad(out, [x, *lstm.parameters()], grad_out)
    out, _ = lstm_ref(x, lstm._flat_weights, num_layers=2, bidirectional=True, batch_first=True)
    got = torch.autograd.grad(out, [x, *lstm.parameters()], grad_out)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lengths=torch.tensor([5, 9])), "lengths"),
        (dict(lengths=torch.tensor([-1, 2])), "lengths"),
        (dict(lengths=torch.tensor([1, 2, 3])), "lengths"),
        (dict(lengths=torch.tensor([1.0, 2.0])), "lengths"),
        (dict(hx=(torch.zeros(1, 3, 4), torch.zeros(1, 3, 4))), "hx"),
        (dict(num_layers=2), "weights"),
    ],
)
def test_bad_input(kwargs, match):
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    with pytest.raises((ValueError, TypeError), match=match):
        lstm_ref(x, lstm._flat_weights, batch_first=True, **kwargs)


def test_bad_input_rank_and_dtype():
    lstm = torch.nn.LSTM(3, 4)
    with pytest.raises(ValueError, match="input"):
        lstm_ref(torch.randn(5, 3), lstm._flat_weights)
    with pytest.raises(TypeError, match="input"):
        lstm_ref(torch.zeros(5, 2, 3, dtype=torch.int64), lstm._flat_weights)
