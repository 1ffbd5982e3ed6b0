"""ONNX export (crnn_fast.export_onnx) and the onnxruntime runner behind Recognizer.from_pretrained("x.onnx")."""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from crnn_fast import export_onnx  # noqa: E402
from crnn_fast.cli import main as cli_main  # noqa: E402
from crnn_fast.data import Charset  # noqa: E402
from crnn_fast.models.crnn import CRNN, CRNNConfig  # noqa: E402
from crnn_fast.models.onnx import OnnxCRNN, OnnxModelError, _OnnxLSTM, load_onnx  # noqa: E402
from crnn_fast.models.pretrained import DEFAULT_MODEL, WEIGHTS_DIR, WeightsError, load_pretrained  # noqa: E402
from crnn_fast.nn import LSTM  # noqa: E402
from crnn_fast.nn.lstm import LSTM_BACKENDS  # noqa: E402
from crnn_fast.recognize import Recognizer  # noqa: E402

HELDOUT = Path(__file__).resolve().parents[2] / "benchmarks" / "heldout"
FP32_TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shipped():
    return load_pretrained(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def exported(shipped, tmp_path_factory):
    model, charset, meta = shipped
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "crnn", charset=charset, training=meta["training"])


@pytest.fixture(scope="module")
def exported_half(shipped, tmp_path_factory):
    model, charset, _ = shipped
    return export_onnx(model, tmp_path_factory.mktemp("onnx_half") / "crnn_half.onnx", charset=charset, half=True)


def _batch(B: int, W: int, seed: int, min_width: int):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(B, 1, 32, W, generator=g) * 2 - 1
    widths = torch.randint(min_width, W + 1, (B,), generator=g)
    widths[0] = W  # the widest image fills the batch, as in Recognizer's batches
    return images, widths


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# -- the file --------------------------------------------------------------------------------------------------------


def test_export_writes_a_checked_graph_with_lstm_nodes_and_a_sidecar(exported, shipped):
    onnx_path, sidecar = exported
    assert onnx_path.suffix == ".onnx" and sidecar == onnx_path.with_suffix(".json")
    onnx.checker.check_model(str(onnx_path), full_check=True)
    graph = onnx.load(str(onnx_path)).graph
    lstms = [n for n in graph.node if n.op_type == "LSTM"]
    assert len(lstms) == 2
    # sequence_lens (input 4) is wired, from the widths input: padding must not reach the recurrence.
    assert all(len(n.input) >= 5 and n.input[4] for n in lstms)
    assert [i.name for i in graph.input] == ["images", "widths"]
    assert [o.name for o in graph.output] == ["log_probs", "lengths"]
    meta = json.loads(sidecar.read_text())
    model, charset, shipped_meta = shipped
    assert Charset.from_dict(meta["charset"]) == charset
    assert meta["num_classes"] == model.num_classes and meta["onnx"]["precision"] == "fp32"
    assert meta["onnx"]["contract"]["name"] == "crnn_fast.crnn/images+widths"
    assert meta["training"] == shipped_meta["training"]


# -- agreement with PyTorch ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("B", [1, 2, 5, 17])
@pytest.mark.parametrize("W", [8, 9, 37, 101, 333])
def test_log_probs_equal_pytorch_for_padded_batches(exported, shipped, B, W):
    model, _, _ = shipped
    session = _session(exported[0])
    images, widths = _batch(B, W, seed=B * 1000 + W, min_width=8)
    with torch.no_grad():
        expected = model(images, widths)
    log_probs, lengths = session.run(None, {"images": images.numpy(), "widths": widths.numpy()})
    assert log_probs.shape == tuple(expected.shape) == (B, W // 4 + 1, model.num_classes)
    assert log_probs.dtype == np.float32
    np.testing.assert_array_equal(lengths, model.output_lengths(widths).numpy())
    # Every frame, the padding included: PyTorch's LSTMs give zeros past a length, so does ONNX's sequence_lens.
    np.testing.assert_allclose(log_probs, expected.numpy(), rtol=0, atol=FP32_TOL)


# ids "backend-…": a bare "cuda" id would read as the GPU mark in conftest.py and skip the case here.
@pytest.mark.parametrize("backend", LSTM_BACKENDS, ids=lambda b: f"backend-{b}")
def test_any_lstm_backend_exports_the_same_network(shipped, tmp_path, backend):
    model, charset, _ = shipped
    model = copy.deepcopy(model).set_lstm_backend(backend)
    path, _ = export_onnx(model, tmp_path / "m.onnx", charset=charset)
    images, widths = _batch(3, 45, seed=7, min_width=8)
    with torch.no_grad():
        expected = shipped[0](images, widths)
    log_probs, _ = _session(path).run(None, {"images": images.numpy(), "widths": widths.numpy()})
    np.testing.assert_allclose(log_probs, expected.numpy(), rtol=0, atol=FP32_TOL)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's, chosen on purpose
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_layers_and_directions_export_as_onnx_lstm(tmp_path, num_layers, bidirectional):
    lstm = LSTM(5, 7, num_layers=num_layers, bidirectional=bidirectional, batch_first=True).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = _OnnxLSTM(lstm)

        def forward(self, x, lengths):
            return self.lstm(x, lengths)

    x, lengths = torch.randn(4, 9, 5), torch.tensor([9, 1, 4, 7])
    path = tmp_path / "lstm.onnx"
    torch.onnx.export(Wrapper(), (x, lengths), str(path), dynamo=False, opset_version=17,
                      input_names=["x", "lengths"], output_names=["y"],
                      dynamic_axes={"x": {0: "B", 1: "T"}, "lengths": {0: "B"}, "y": {0: "B", 1: "T"}})
    x2, lengths2 = torch.randn(3, 11, 5), torch.tensor([2, 11, 6])
    (y,) = _session(path).run(None, {"x": x2.numpy(), "lengths": lengths2.numpy()})
    with torch.no_grad():
        expected, _ = lstm(x2, lengths=lengths2)
    np.testing.assert_allclose(y, expected.numpy(), rtol=0, atol=1e-5)


def _heldout_subset(step: int) -> list[Path]:
    """Every `step`-th image of every held-out subset: deterministic, and all four subsets."""
    paths = []
    for labels in sorted(HELDOUT.glob("*/labels.tsv")):
        names = [line.split("\t", 1)[0] for line in labels.read_text(encoding="utf-8").splitlines() if line.strip()]
        paths += [labels.parent / n for n in names[::step]]
    return paths


@pytest.mark.skipif(not HELDOUT.is_dir(), reason="benchmarks/heldout is not in this checkout")
def test_same_texts_and_confidences_on_the_heldout_images(exported):
    """The issue's target on a quarter of the held-out set (benchmarks/bench_onnx.py runs all of it): the same
    texts on >= 99%, confidences within 1e-3."""
    paths = _heldout_subset(4)
    assert len(paths) == 200
    torch_results = Recognizer.from_pretrained(DEFAULT_MODEL, device="cpu", lm=False).recognize(paths)
    onnx_rec = Recognizer.from_pretrained(exported[0], device="cpu")
    assert isinstance(onnx_rec.model, OnnxCRNN)
    onnx_results = onnx_rec.recognize(paths)
    assert all(r.ok for r in torch_results + onnx_results)
    same = sum(a.text == b.text for a, b in zip(torch_results, onnx_results))
    assert same >= 0.99 * len(paths)
    assert max(abs(a.confidence - b.confidence) for a, b in zip(torch_results, onnx_results)) <= 1e-3


@pytest.mark.skipif(not HELDOUT.is_dir(), reason="benchmarks/heldout is not in this checkout")
def test_beam_and_lexicon_decode_the_onnx_log_probs_as_pytorch_s(exported):
    paths = _heldout_subset(50)
    torch_rec = Recognizer.from_pretrained(DEFAULT_MODEL, device="cpu", lm=False)
    onnx_rec = Recognizer.from_pretrained(exported[0], device="cpu")
    words = sorted({w for r in torch_rec.recognize(paths) for w in r.text.split()} | {"the", "and"})
    for options in ({"beam": 8}, {"beam": 8, "lexicon": words}):
        a, b = torch_rec.recognize(paths, **options), onnx_rec.recognize(paths, **options)
        assert [r.text for r in a] == [r.text for r in b]
        assert max(abs(x.confidence - y.confidence) for x, y in zip(a, b)) <= 1e-3


# -- float16 ---------------------------------------------------------------------------------------------------------


def test_half_export_error_is_that_of_fp16(exported, exported_half, shipped):
    """Against the fp32 network, the fp16 graph errs at most 2x as much as the same network run in fp16 by PyTorch."""
    model, _, _ = shipped
    onnx.checker.check_model(str(exported_half[0]), full_check=True)
    assert exported_half[0].stat().st_size < 0.6 * exported[0].stat().st_size
    assert json.loads(exported_half[1].read_text())["onnx"]["precision"] == "fp16"
    runner, _, _ = load_onnx(exported_half[0], device="cpu")
    assert runner.precision == "fp16"
    model_half = copy.deepcopy(model).half()
    for B, W in [(1, 9), (5, 101), (17, 64)]:
        images, widths = _batch(B, W, seed=W, min_width=8)
        with torch.no_grad():
            expected = model(images, widths)
            torch_half_error = (model_half(images.half(), widths).float() - expected).abs().max().item()
        log_probs = runner(images, widths)
        assert log_probs.dtype == torch.float32
        assert (log_probs - expected).abs().max().item() <= 2 * torch_half_error


@pytest.mark.skipif(not HELDOUT.is_dir(), reason="benchmarks/heldout is not in this checkout")
def test_half_export_reads_the_same_texts(exported_half):
    paths = _heldout_subset(8)
    a = Recognizer.from_pretrained(DEFAULT_MODEL, device="cpu", lm=False).recognize(paths)
    b = Recognizer.from_pretrained(exported_half[0], device="cpu").recognize(paths)
    assert sum(x.text == y.text for x, y in zip(a, b)) >= 0.99 * len(paths)


# -- bad input -------------------------------------------------------------------------------------------------------


def _copy(exported, folder: Path, name: str = "m") -> tuple[Path, Path]:
    onnx_path, sidecar = folder / f"{name}.onnx", folder / f"{name}.json"
    shutil.copy(exported[0], onnx_path)
    shutil.copy(exported[1], sidecar)
    return onnx_path, sidecar


def _edit_sidecar(sidecar: Path, edit) -> None:
    meta = json.loads(sidecar.read_text())
    edit(meta)
    sidecar.write_text(json.dumps(meta))


def test_an_onnx_file_without_its_sidecar_is_a_clear_error(exported, tmp_path):
    onnx_path, sidecar = _copy(exported, tmp_path)
    sidecar.unlink()
    with pytest.raises(FileNotFoundError, match="no JSON sidecar"):
        Recognizer.from_pretrained(onnx_path, device="cpu")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Recognizer.from_pretrained(tmp_path / "missing.onnx", device="cpu")


def test_a_safetensors_sidecar_is_not_an_onnx_sidecar(exported, tmp_path):
    onnx_path, sidecar = _copy(exported, tmp_path)
    shutil.copy(WEIGHTS_DIR / f"{DEFAULT_MODEL}.json", sidecar)
    with pytest.raises(OnnxModelError, match="no 'onnx' section"):
        Recognizer.from_pretrained(onnx_path, device="cpu")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["onnx"].update(contract={"name": "crnn_fast.crnn/images", "version": 1}), "input contract"),
    (lambda m: m["onnx"]["contract"].update(version=2), "input contract"),
    (lambda m: m["input"].update(height=48), "preprocessing"),
    (lambda m: m.update(format="something.else"), "sidecar"),
])
def test_a_sidecar_with_another_contract_is_a_clear_error(exported, tmp_path, edit, message):
    onnx_path, sidecar = _copy(exported, tmp_path)
    _edit_sidecar(sidecar, edit)
    with pytest.raises(WeightsError, match=message):  # OnnxModelError is one
        load_onnx(onnx_path, device="cpu")


def test_a_graph_with_another_contract_is_a_clear_error(exported, tmp_path):
    from onnx import TensorProto, helper

    # A recogniser graph with one input, as other exporters write them.
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "other",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 1, 32, "W"])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", 1, 32, "W"])])
    other = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_path, _ = _copy(exported, tmp_path)
    onnx.save(other, str(onnx_path))
    with pytest.raises(OnnxModelError, match="has inputs"):
        load_onnx(onnx_path, device="cpu")
    # The right graph with a sidecar of another charset: the class count gives it away.
    onnx_path, sidecar = _copy(exported, tmp_path, "charset")
    small = Charset.alphanumeric_lower()
    _edit_sidecar(sidecar, lambda m: m.update(charset=small.to_dict(), num_classes=small.num_classes))
    with pytest.raises(OnnxModelError, match="outputs"):
        load_onnx(onnx_path, device="cpu")
    # One with another channel count in the sidecar.
    onnx_path, sidecar = _copy(exported, tmp_path, "rgb")
    _edit_sidecar(sidecar, lambda m: m.update(in_channels=3))
    with pytest.raises(OnnxModelError, match="has inputs"):
        load_onnx(onnx_path, device="cpu")


def test_a_corrupt_onnx_file_is_a_clear_error(exported, tmp_path):
    onnx_path, _ = _copy(exported, tmp_path)
    onnx_path.write_bytes(onnx_path.read_bytes()[:5000])
    with pytest.raises(OnnxModelError, match="not a valid ONNX model"):
        load_onnx(onnx_path, device="cpu")


def test_runner_and_recognizer_options_are_checked(exported):
    runner, charset, _ = load_onnx(exported[0], device="cpu")
    images, widths = _batch(2, 40, seed=0, min_width=8)
    with pytest.raises(ValueError, match="widths must lie in"):
        runner(images, torch.tensor([41, 20]))
    with pytest.raises(ValueError, match="widths must be an integer tensor of shape"):
        runner(images, widths.float())
    with pytest.raises(ValueError, match="images must have shape"):
        runner(images[:, :, :16], widths)
    with pytest.raises(ValueError, match="precision and cuda_graphs"):
        Recognizer(runner, charset, device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="lstm_backend"):
        Recognizer.from_pretrained(exported[0], device="cpu", lstm_backend="ref")
    with pytest.raises(ValueError, match="threads must be"):
        load_onnx(exported[0], device="cpu", threads=0)
    with pytest.raises(ValueError, match="path must name an .onnx file"):
        load_onnx(exported[1], device="cpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ValueError, match="CUDAExecutionProvider"):
            load_onnx(exported[0], device="cuda")


def test_export_arguments_are_checked(shipped, tmp_path):
    model, charset, _ = shipped
    with pytest.raises(TypeError, match="model must be a crnn_fast CRNN"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "a.onnx", charset=charset)
    with pytest.raises(ValueError, match="classes"):
        export_onnx(model, tmp_path / "a.onnx", charset=Charset.alphanumeric_lower())
    with pytest.raises(ValueError, match="opset must be"):
        export_onnx(model, tmp_path / "a.onnx", charset=charset, opset=12)
    with pytest.raises(TypeError, match="half must be a bool"):
        export_onnx(model, tmp_path / "a.onnx", charset=charset, half="yes")
    # NAME.json already serving NAME.safetensors of another model is not overwritten.
    tiny = CRNN(charset.num_classes, variant=CRNNConfig(channels=(4, 8, 8, 8, 16, 16, 16), lstm_hidden=8))
    from crnn_fast.models.pretrained import save_pretrained

    save_pretrained(tiny, charset, tmp_path / "tiny")
    with pytest.raises(ValueError, match="a different model"):
        export_onnx(model, tmp_path / "tiny.onnx", charset=charset)
    export_onnx(tiny, tmp_path / "tiny.onnx", charset=charset)  # the same model may share it
    assert load_pretrained(tmp_path / "tiny.safetensors")[0].config == tiny.config


# -- command line ----------------------------------------------------------------------------------------------------


def test_cli_export_onnx_then_recognize(tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert cli_main(["export-onnx", str(out), "--opset", "14"]) == 0
    assert out.exists() and out.with_suffix(".json").exists()
    assert json.loads(out.with_suffix(".json").read_text())["onnx"]["opset"] == 14
    image = sorted((HELDOUT / "clean_words").glob("*.png"))[0] if HELDOUT.is_dir() else None
    if image is not None:
        capsys.readouterr()
        assert cli_main(["recognize", "--model", str(out), "--device", "cpu", "--no-progress", "-q", str(image)]) == 0
        assert str(image) in capsys.readouterr().out
    assert cli_main(["export-onnx", str(tmp_path / "bad.onnx"), "--opset", "99"]) == 2
    assert cli_main(["export-onnx", str(tmp_path / "bad.onnx"), "--model", str(tmp_path / "none.safetensors")]) == 2
