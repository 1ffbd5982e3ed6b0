import gzip
import random

import pytest

from crnn_fast.data import corpus


def test_to_ascii_folds_typography_and_drops_the_rest():
    assert corpus.to_ascii("\u201cCaf\u00e9\u201d \u2014 na\u00efve\u2026  it\u2019s") == '"Cafe" -- naive... it\'s'
    assert corpus.to_ascii("  two\n lines ") == "two lines"
    assert corpus.to_ascii("\u4e2d\u6587 text") is None
    assert corpus.to_ascii("") is None


def test_clean_paragraphs_filters_tables_short_and_duplicates():
    raw = ["A real sentence of English prose, long enough.", "short", "A real sentence of English prose, long enough.",
           "| 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 |", "Another paragraph\nwrapped over\ntwo lines here."]
    assert corpus.clean_paragraphs(iter(raw)) == ["A real sentence of English prose, long enough.",
                                                  "Another paragraph wrapped over two lines here."]


def test_sources_are_parsed(tmp_path):
    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    (fortunes / "wisdom").write_text("He who laughs last\nlaughs best.\n%\nNever put off till tomorrow.\n%\n")
    (fortunes / "wisdom.dat").write_bytes(b"\x00\x01binary index")
    (fortunes / "ascii-art").write_text("   /\\_/\\\n  ( o.o )\n")
    dictd = tmp_path / "dictd"
    dictd.mkdir()
    with gzip.open(dictd / "gcide.dict.dz", "wt") as f:
        f.write('Affect \\Af*fect"\\, v. t. [L. affectus]\n   To act upon.\n   [1913 Webster]\n\n'
                "      The climate affected their {health} and spirits.\n      --Macaulay.\n      [1913 Webster]\n")
    raw = list(corpus.iter_source_paragraphs(str(fortunes), str(dictd)))
    cleaned = corpus.clean_paragraphs(iter(raw), min_chars=10)
    assert cleaned == ["He who laughs last laughs best.", "Never put off till tomorrow.",
                       "The climate affected their health and spirits. --Macaulay."]


def test_the_licence_texts_are_never_read():
    with pytest.raises(ValueError, match="outside evaluation"):
        list(corpus.iter_source_paragraphs(corpus.FORBIDDEN_ROOT, "/nonexistent"))


def test_split_by_paragraph_hash():
    paragraphs = [f"Paragraph number {i} of a made-up corpus." for i in range(500)]
    test = [p for p in paragraphs if corpus.is_heldout_paragraph(p)]
    assert 20 < len(test) < 90  # about one in HELDOUT_MOD
    assert corpus.stable_hash("hello") == 907060870  # CRC-32: the same in every process


def test_installed_corpus_splits_are_disjoint():
    train, test = corpus.load_corpus("train"), corpus.load_corpus("test")
    if not train:
        pytest.skip("no corpus package installed (Debian fortunes-min or those of scripts/install_training_data.sh)")
    assert test and not set(train) & set(test)
    assert all(not corpus.is_heldout_paragraph(p) for p in train[:2000])
    assert all(32 <= ord(c) < 127 for p in train[:2000] for c in p)


def test_corpus_lines_are_word_runs_within_the_length():
    paragraphs = ["one two three four five six seven", "eight nine ten", "eleven twelve"]
    lines = corpus.CorpusLines(paragraphs)
    rng = random.Random(0)
    words = " ".join(paragraphs).split()
    for length in (3, 10, 25, 60):
        for _ in range(50):
            line = lines.sample(rng, length)
            assert line and (len(line) <= length or " " not in line)
            parts = line.split()
            start = words.index(parts[0])
            assert parts == words[start:start + len(parts)] or all(p in words for p in parts)
    with pytest.raises(ValueError, match="paragraphs"):
        corpus.CorpusLines([])
