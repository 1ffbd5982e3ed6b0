import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from crnn_fast.data import Charset
from crnn_fast.models.crnn import CRNN, CRNNConfig
from crnn_fast.models.pretrained import WeightsError, load_pretrained, save_pretrained

TINY = CRNNConfig(channels=(4, 8, 8, 8, 16, 16, 16), lstm_hidden=8)


@pytest.fixture
def tiny(tmp_path):
    charset = Charset.printable_ascii()
    weights, sidecar = save_pretrained(CRNN(charset.num_classes, variant=TINY), charset, tmp_path / "tiny")
    return weights, sidecar


def _edit_sidecar(sidecar, edit):
    meta = json.loads(sidecar.read_text())
    edit(meta)
    sidecar.write_text(json.dumps(meta))


def test_round_trip(tiny):
    model, charset, meta = load_pretrained(tiny[0])
    assert model.config == TINY and charset == Charset.printable_ascii() and meta["in_channels"] == 1


def test_integer_weights_are_refused_not_cast(tiny):
    weights, _ = tiny
    state = load_file(str(weights))
    name = "rnn.0.embedding.weight"
    state[name] = (state[name] * 1000).to(torch.int32)
    save_file(state, str(weights))
    with pytest.raises(WeightsError, match=r"'rnn.0.embedding.weight' has dtype int32, expected a floating-point"):
        load_pretrained(weights)


def test_float_counter_is_refused(tiny):
    weights, _ = tiny
    state = load_file(str(weights))
    state["cnn.batchnorm2.num_batches_tracked"] = state["cnn.batchnorm2.num_batches_tracked"].float()
    save_file(state, str(weights))
    with pytest.raises(WeightsError, match="num_batches_tracked' has dtype float32, expected an integer"):
        load_pretrained(weights)


def test_half_weights_still_load(tmp_path):
    charset = Charset.printable_ascii()
    model = CRNN(charset.num_classes, variant=TINY)
    weights, _ = save_pretrained(model, charset, tmp_path / "half", half=True)
    loaded, _, _ = load_pretrained(weights)
    assert torch.allclose(loaded.rnn[1].embedding.weight, model.rnn[1].embedding.weight, atol=1e-2)


@pytest.mark.parametrize("hidden", [10**9, 4096])
def test_a_huge_sidecar_model_is_checked_before_it_is_built(tiny, hidden):
    """The sidecar's model is compared with the file's shapes before any of it is allocated (10**9 per
    direction would be terabytes)."""
    weights, sidecar = tiny
    _edit_sidecar(sidecar, lambda m: m["config"].update(lstm_hidden=hidden))
    with pytest.raises(WeightsError, match="does not match its sidecar's model|not describe a model that can be built"):
        load_pretrained(weights)


@pytest.mark.parametrize("field, value", [("in_channels", "x"), ("in_channels", 0), ("num_classes", "96"),
                                          ("num_classes", True), ("config", [1, 2])])
def test_bad_sidecar_fields_are_named(tiny, field, value):
    weights, sidecar = tiny
    _edit_sidecar(sidecar, lambda m: m.update({field: value}))
    with pytest.raises(WeightsError, match=f"field '{field}'"):
        load_pretrained(weights)


@pytest.mark.parametrize("key, value", [("channels", 5), ("lstm_hidden", "8"), ("batch_norm", 2)])
def test_bad_config_fields_are_named(tiny, key, value):
    weights, sidecar = tiny
    _edit_sidecar(sidecar, lambda m: m["config"].update({key: value}))
    with pytest.raises(WeightsError, match=key):
        load_pretrained(weights)


def test_another_suffix_is_not_swapped_for_the_safetensors_beside_it(tiny):
    weights, _ = tiny
    checkpoint = weights.with_suffix(".pt")
    checkpoint.write_bytes(b"a training checkpoint")
    with pytest.raises(WeightsError, match=r"tiny.pt' is not a .safetensors weights file"):
        load_pretrained(checkpoint)
