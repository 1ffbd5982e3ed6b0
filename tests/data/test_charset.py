import string

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from crnn_fast.data import Charset

PRINTABLE = Charset.printable_ascii()
ALNUM = Charset.alphanumeric_lower()


def test_ids_start_at_1_after_the_blank():
    charset = Charset("abc")
    assert charset.blank == 0
    assert len(charset) == charset.num_classes == 4
    assert charset.characters == "abc"
    assert charset.encode("cab") == [3, 1, 2]
    assert Charset(["a", "b", "c"]) == charset
    assert "b" in charset and "d" not in charset


def test_predefined_charsets():
    assert len(PRINTABLE.characters) == 95 and len(PRINTABLE) == 96
    assert PRINTABLE.characters == "".join(sorted(string.printable[:95]))
    assert PRINTABLE.characters[0] == " " and PRINTABLE.characters[-1] == "~"
    assert PRINTABLE.space == 1
    assert ALNUM.characters == string.digits + string.ascii_lowercase
    assert len(ALNUM) == 37
    assert ALNUM.space is None


def test_round_trip():
    text = "Hello, World! 42 ~"
    ids = PRINTABLE.encode(text)
    assert all(1 <= i < len(PRINTABLE) for i in ids)
    assert PRINTABLE.decode(ids) == text
    assert PRINTABLE.decode(torch.tensor(ids)) == text
    assert PRINTABLE.decode([]) == PRINTABLE.decode(torch.zeros(0, dtype=torch.long)) == ""
    assert PRINTABLE.encode("") == []


@given(st.text(alphabet=PRINTABLE.characters, max_size=50))
def test_round_trip_property_printable(text):
    assert PRINTABLE.decode(PRINTABLE.encode(text)) == text


@settings(max_examples=50)
@given(st.lists(st.characters(), min_size=1, max_size=30, unique=True), st.data())
def test_round_trip_property_any_charset(characters, data):
    charset = Charset(characters)
    text = data.draw(st.text(alphabet=characters, max_size=20))
    assert charset.decode(charset.encode(text)) == text
    restored = Charset.from_json(charset.to_json())
    assert restored == charset and restored.encode(text) == charset.encode(text)


def test_unknown_characters_are_named_with_positions():
    with pytest.raises(ValueError, match=r"text contains characters not in the charset: 'é' at 1, 'Z' at 4"):
        ALNUM.encode("héllZ")
    with pytest.raises(ValueError, match=r"'!' at 0, .* and 5 more"):
        ALNUM.encode("!" * 15)
    with pytest.raises(ValueError, match=r"texts\[1\] contains characters not in the charset: ' ' at 1"):
        ALNUM.encode_batch(["ok", "n o"])


def test_bad_characters_are_rejected():
    with pytest.raises(ValueError, match="characters must be unique.*'a'"):
        Charset("abca")
    with pytest.raises(ValueError, match="characters must not be empty"):
        Charset("")
    with pytest.raises(ValueError, match="characters must not be empty"):
        Charset([])
    with pytest.raises(ValueError, match="characters must be single-character strings.*'bc' at 1"):
        Charset(["a", "bc"])
    with pytest.raises(ValueError, match="characters must be single-character strings.*''"):
        Charset(["a", ""])
    with pytest.raises(ValueError, match="characters must be single-character strings.*1 at 0"):
        Charset([1, 2])
    with pytest.raises(TypeError, match="characters must be a str or a sequence"):
        Charset({"a", "b"})
    with pytest.raises(TypeError, match="characters must be a str or a sequence"):
        Charset(b"ab")


def test_decode_rejects_blank_and_out_of_range_ids():
    with pytest.raises(ValueError, match=r"ids must be character ids in \[1, 36\].*got 0 at 1"):
        ALNUM.decode([1, 0, 2])
    with pytest.raises(ValueError, match="got 37 at 0, -1 at 1"):
        ALNUM.decode(torch.tensor([37, -1]))
    with pytest.raises(ValueError, match="ids must be 1-D"):
        ALNUM.decode(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="ids must be integers"):
        ALNUM.decode(torch.ones(2))
    with pytest.raises(TypeError, match=r"ids\[1\] must be an int, got float"):
        ALNUM.decode([1, 2.0])
    with pytest.raises(TypeError, match="ids must be a sequence"):
        ALNUM.decode("12")


def test_encode_type_errors():
    with pytest.raises(TypeError, match="text must be a str"):
        ALNUM.encode(["a"])
    with pytest.raises(TypeError, match="texts must be a sequence of str"):
        ALNUM.encode_batch("abc")
    with pytest.raises(TypeError, match=r"texts\[0\] must be a str"):
        ALNUM.encode_batch([3])


def test_encode_batch_feeds_ctc_loss():
    texts = ["ab1", "", "zz9x"]
    targets, lengths = ALNUM.encode_batch(texts)
    assert targets.dtype == lengths.dtype == torch.int64
    assert lengths.tolist() == [3, 0, 4]
    assert targets.tolist() == [i for text in texts for i in ALNUM.encode(text)]

    T = 10
    log_probs = torch.randn(T, 3, len(ALNUM), dtype=torch.float64).log_softmax(-1)
    input_lengths = torch.full((3,), T)
    losses = F.ctc_loss(log_probs, targets, input_lengths, lengths, blank=ALNUM.blank, reduction="none")
    assert torch.isfinite(losses).all()
    for b, text in enumerate(texts):
        alone = F.ctc_loss(log_probs[:, b : b + 1], torch.tensor([ALNUM.encode(text)]), input_lengths[:1],
                           lengths[b : b + 1], reduction="none")
        torch.testing.assert_close(losses[b : b + 1], alone)

    empty_targets, empty_lengths = ALNUM.encode_batch([])
    assert empty_targets.shape == empty_lengths.shape == (0,)


def test_json_round_trip_keeps_tricky_characters():
    charset = Charset(['"', "\\", "\n", " ", "é", "😀", "\x00"])
    text = charset.to_json()
    assert Charset.from_json(text) == charset
    assert Charset.from_dict(charset.to_dict()) == charset
    assert Charset.from_json(PRINTABLE.to_json(indent=2)) == PRINTABLE
    assert hash(Charset.from_json(text)) == hash(charset)


def test_from_dict_rejects_other_formats():
    with pytest.raises(ValueError, match="blank"):
        Charset.from_dict({"characters": ["a"], "blank": 1})
    with pytest.raises(ValueError, match="format"):
        Charset.from_dict({"format": "other", "characters": ["a"]})
    with pytest.raises(ValueError, match="characters"):
        Charset.from_dict({"format": "crnn_fast.charset", "version": 1})
    with pytest.raises(TypeError, match="data must be a dict"):
        Charset.from_dict(["a"])
