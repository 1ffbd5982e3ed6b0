import pytest

from crnn_fast.evaluate import alnum_lower, compute_metrics


def test_exact_alnum_cer_by_hand():
    preds = ["hello", "World!", "abc", ""]
    labels = ["hello", "world", "abd", "xy"]
    m = compute_metrics(preds, labels)
    assert m.n == 4
    assert m.exact == pytest.approx(1 / 4)
    # alnum: "hello"=="hello", "world"=="world", "abc"!="abd", ""!="xy"
    assert m.alnum == pytest.approx(2 / 4)
    # edits: 0 + ("World!" -> "world": 2) + 1 + 2 = 5 over 5 + 5 + 3 + 2 = 15 label chars
    assert m.edits == 5 and m.chars == 15
    assert m.cer == pytest.approx(5 / 15)


def test_alnum_lower():
    assert alnum_lower("Hello, World-42!") == "helloworld42"
    assert alnum_lower("$3.50") == "350"


def test_edge_cases():
    assert compute_metrics([], []).n == 0
    m = compute_metrics(["a"], [""])
    assert m.cer == 1.0 and m.exact == 0.0
    assert compute_metrics([""], [""]).cer == 0.0
    with pytest.raises(ValueError, match="same length"):
        compute_metrics(["a"], [])
