import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import crnn_fast
from crnn_fast.nn import LSTM, convert_lstm


def _pair(**kwargs):
    reference = torch.nn.LSTM(**kwargs).double()
    ours = LSTM(**kwargs, backend="ref").double()
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def _close(a, b):
    torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_state_dict_and_parameter_names_match_torch():
    reference, ours = _pair(input_size=5, hidden_size=7, num_layers=2, bidirectional=True)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in reference.named_parameters()]
    assert "weight_hh_l1_reverse" in ours.state_dict()
    reference.load_state_dict(ours.state_dict())  # both ways


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_forward_contract_matches_torch(batch_first, bidirectional):
    reference, ours = _pair(input_size=4, hidden_size=6, num_layers=2, bidirectional=bidirectional,
                            batch_first=batch_first)
    x = torch.randn((3, 5, 4) if batch_first else (5, 3, 4), dtype=torch.float64)
    D = 2 if bidirectional else 1
    hx = (torch.randn(2 * D, 3, 6, dtype=torch.float64), torch.randn(2 * D, 3, 6, dtype=torch.float64))
    for args in [(x,), (x, hx)]:
        expected, (h_e, c_e) = reference(*args)
        got, (h, c) = ours(*args)
        _close(got, expected), _close(h, h_e), _close(c, c_e)


def test_unbatched_input():
    reference, ours = _pair(input_size=4, hidden_size=3, bidirectional=True)
    x = torch.randn(6, 4, dtype=torch.float64)
    expected, (h_e, _) = reference(x)
    got, (h, _) = ours(x)
    _close(got, expected), _close(h, h_e)


@pytest.mark.parametrize("backend", ["ref", "torch"])
def test_packed_sequence_and_lengths(backend):
    reference, ours = _pair(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, batch_first=True)
    ours.backend = backend
    x = torch.randn(4, 8, 3, dtype=torch.float64)
    lengths = torch.tensor([3, 8, 1, 6])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected_packed, (h_e, c_e) = reference(packed)
    got_packed, (h, c) = ours(packed)
    assert torch.equal(got_packed.batch_sizes, expected_packed.batch_sizes)
    _close(got_packed.data, expected_packed.data), _close(h, h_e), _close(c, c_e)
    expected, _ = pad_packed_sequence(expected_packed, batch_first=True, total_length=8)
    got, (h, c) = ours(x, lengths=lengths)
    _close(got, expected), _close(h, h_e), _close(c, c_e)


def test_convert_lstm_in_place_keeps_outputs():
    class Head(torch.nn.Module):  # the deep-text-recognition-benchmark / EasyOCR BidirectionalLSTM block
        def __init__(self, n_in, hidden, n_out):
            super().__init__()
            self.rnn = torch.nn.LSTM(n_in, hidden, bidirectional=True, batch_first=True)
            self.linear = torch.nn.Linear(hidden * 2, n_out)

        def forward(self, x):
            self.rnn.flatten_parameters()
            return self.linear(self.rnn(x)[0])

    model = torch.nn.Sequential(Head(8, 6, 6), Head(6, 6, 5)).double().eval()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    expected = model(x)
    assert convert_lstm(model, backend="ref") is model
    assert all(type(m.rnn) is LSTM and m.rnn.backend == "ref" for m in model)
    _close(model(x), expected)


def test_convert_a_bare_lstm_returns_replacement():
    lstm = torch.nn.LSTM(3, 4)
    new = convert_lstm(lstm, backend="ref")
    assert isinstance(new, LSTM) and new is not lstm
    assert crnn_fast.convert_lstm is convert_lstm


def test_dropout_between_layers_in_training():
    torch.manual_seed(1)
    ours = LSTM(3, 4, num_layers=3, dropout=0.5, backend="ref").train()
    x = torch.randn(5, 2, 3)
    a, _ = ours(x)
    b, _ = ours(x)
    assert not torch.equal(a, b)  # random masks between layers
    ours.eval()
    _close(ours(x.double().float())[0], ours(x)[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        LSTM(3, 4, backend="fast")
    with pytest.raises(NotImplementedError, match="proj_size"):
        LSTM(3, 4, proj_size=2)
    ours = LSTM(3, 4, backend="ref")
    with pytest.raises(RuntimeError, match="input.size"):
        ours(torch.randn(5, 2, 7))
    with pytest.raises(RuntimeError, match="hx"):
        ours(torch.randn(5, 2, 3), (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))
    with pytest.raises(ValueError, match="lengths"):
        ours(torch.randn(5, 2, 3), lengths=torch.tensor([6, 1]))
    with pytest.raises(ValueError, match="input"):
        ours(torch.randn(5, 2, 3, 1))
    with pytest.raises(TypeError, match="model"):
        convert_lstm("not a model")
