import random

import numpy as np
import pytest
import torch

from crnn_fast.data import Charset, synth
from crnn_fast.data import fonts as fonts_module
from crnn_fast.data.synth import (
    AUGMENTATIONS,
    HELDOUT_FONT_DIRS,
    HELDOUT_SUBSETS,
    RenderConfig,
    SynthDataset,
    SynthGenerator,
    TextSampler,
    is_heldout_word,
    min_frames,
)
from crnn_fast.formats.image_batch import HEIGHT, pad_batch, widen_batch

CHARSET = Charset.printable_ascii()


def _fonts_or_skip(split="train"):
    fonts = synth.fonts_for_split(split)
    if not fonts:
        pytest.skip(f"no usable {split} fonts under {synth.FONT_ROOTS} (install fonts-dejavu-core"
                    + (", fonts-sil-charis / fonts-karla" if split == "test" else "") + ")")
    return fonts


@pytest.fixture(scope="module")
def gen():
    _fonts_or_skip()
    return SynthGenerator("train")


def test_deterministic_per_seed(gen):
    for seed in (0, 1, 12345):
        a = [gen.sample(random.Random(seed)) for _ in range(1)]
        b = [gen.sample(random.Random(seed)) for _ in range(1)]
        for (ia, ta), (ib, tb) in zip(a, b):
            assert ta == tb and np.array_equal(ia, ib)
    rng1, rng2 = random.Random(7), random.Random(7)
    seq1 = [gen.sample(rng1) for _ in range(5)]
    seq2 = [gen.sample(rng2) for _ in range(5)]
    assert [t for _, t in seq1] == [t for _, t in seq2]
    assert all(np.array_equal(x, y) for (x, _), (y, _) in zip(seq1, seq2))


def test_images_are_32_high_uint8_and_labels_in_charset(gen):
    rng = random.Random(3)
    for _ in range(120):
        image, text = gen.sample(rng)
        assert image.dtype == np.uint8 and image.ndim == 2 and image.shape[0] == HEIGHT
        assert text and text == text.strip() and all(c in CHARSET for c in text)
        # wide enough for CTC: T = W // 4 + 1 frames >= characters + blanks between repeats
        assert image.shape[1] // 4 + 1 >= min_frames(text)
        assert image.shape[1] <= gen.render_config.max_width or image.shape[1] // 4 + 1 >= min_frames(text)


PARAGRAPHS = ("The quick brown fox jumps over the lazy dog, twice. It was the best of times, it was the worst "
              "of times.", "Call me Ishmael. Some years ago -- never mind how long precisely -- having little money.",
              "A short one.")


@pytest.mark.parametrize("kind", synth.TEXT_KINDS)
def test_every_text_kind(kind):
    sampler = TextSampler("train", words=("alpha", "beta", "gamma", "delta", "omega", "sigma"), paragraphs=PARAGRAPHS)
    rng = random.Random(0)
    for _ in range(30):
        text = sampler.sample(rng, kind)
        assert text and all(c in CHARSET for c in text) and "  " not in text
    if kind in ("line", "sentence"):
        assert len(sampler.sample(rng, kind)) <= sampler.max_line_chars


@pytest.mark.parametrize("kind", ["line", "sentence"])
def test_lines_reach_the_length_limit(kind):
    """Half of the lines are drawn at least half as long as max_line_chars: long document lines are common."""
    sampler = TextSampler("train", max_line_chars=100, paragraphs=PARAGRAPHS, mix={kind: 1.0})
    rng = random.Random(1)
    lengths = [len(sampler.sample(rng, kind)) for _ in range(400)]
    assert max(lengths) <= 100
    assert sum(n >= 50 for n in lengths) >= 0.4 * len(lengths)
    assert sum(n >= 85 for n in lengths) >= 0.1 * len(lengths)


def test_sentences_come_from_the_paragraphs():
    sampler = TextSampler("train", max_line_chars=60, paragraphs=PARAGRAPHS, mix={"sentence": 1.0})
    words = {w for p in PARAGRAPHS for w in p.split()}
    rng = random.Random(2)
    lines = [sampler.sample(rng, "sentence") for _ in range(200)]
    # Most lines are runs of the corpus's words as they stand (others are upper- or title-cased, or have a
    # number or code inserted).
    assert sum(all(w in words for w in t.split()) for t in lines) >= 0.75 * len(lines)
    assert any(t.isupper() for t in lines)


def test_sentence_kind_without_a_corpus_is_a_clear_error():
    with pytest.raises(ValueError, match="no text corpus"):
        TextSampler("train", paragraphs=(), mix={"sentence": 1.0, "word": 1.0})
    TextSampler("train", paragraphs=(), mix={"word": 1.0})  # no sentences asked for: no corpus needed


def test_word_spacing_changes_the_gaps_not_the_words():
    fonts = _fonts_or_skip()
    font = next((f for f in fonts if not f.caps_only), fonts[0])
    pil = synth._load_font(font.path, 30)
    tight, tight_w = synth._layout("one two three", pil, 0.0, 0.4, None)
    loose, loose_w = synth._layout("one two three", pil, 0.0, 2.0, None)
    assert [p for p, _ in tight] == [p for p, _ in loose] == ["one", "two", "three"]
    space = pil.getlength(" ")
    assert loose_w - tight_w == pytest.approx(2 * (2.0 - 0.4) * space, abs=1.0)
    spaced, _ = synth._layout("ab c", pil, 5.0, 1.0, None)
    assert [p for p, _ in spaced] == ["a", "b", "c"]
    assert spaced[1][1] == pytest.approx(pil.getlength("a") + 5.0)


def test_heldout_words_split():
    words = synth.load_words()
    train = set(synth.words_for_split("train"))
    test = set(synth.words_for_split("test"))
    assert train and test and not (train & test) and train | test == set(words)
    assert all(not is_heldout_word(w) for w in train) and all(is_heldout_word(w) for w in test)
    # The hash is stable across processes (not Python's salted hash()).
    assert synth.stable_hash("hello") == 907060870
    rng = random.Random(1)
    tr, te = TextSampler("train"), TextSampler("test")
    for _ in range(300):
        assert not is_heldout_word(tr._plain_word(rng))
        assert is_heldout_word(te._plain_word(rng))


def test_heldout_fonts_split():
    fonts = synth.discover_fonts()
    if not fonts:
        pytest.skip("no fonts installed")
    held = fonts_module.heldout_font_dirs()
    assert HELDOUT_FONT_DIRS <= held
    train, test = synth.fonts_for_split("train"), synth.fonts_for_split("test")
    assert all(f.family_dir not in held for f in train)
    assert all(f.family_dir in held for f in test)
    assert set(train) | set(test) == set(fonts) and not set(train) & set(test)
    g = SynthGenerator("train")
    assert all(f.family_dir not in held for f in g.fonts)


def test_test_split_renders_only_heldout_fonts():
    fonts = _fonts_or_skip("test")
    g = SynthGenerator("test")
    assert set(g.fonts) == set(fonts)
    image, text = g.sample(random.Random(0), kind="word")
    assert image.shape[0] == HEIGHT


@pytest.mark.parametrize("aug", AUGMENTATIONS)
def test_every_augmentation_runs(aug):
    fonts = _fonts_or_skip()
    config = RenderConfig(force=(aug,))
    rng = random.Random(5)
    for degraded in (False, True):
        image, label = synth.render_text("Hello, World 42!", fonts[0], rng, config, degraded=degraded)
        assert image.shape[0] == HEIGHT and image.dtype == np.uint8 and image.shape[1] > 16
        assert label in ("Hello, World 42!", "HELLO, WORLD 42!")
        native, _ = synth.render_text("Hello", fonts[0], rng, config, degraded=degraded, native=True)
        assert native.ndim == 2 and native.dtype == np.uint8


def test_all_augmentations_at_once():
    fonts = _fonts_or_skip()
    image, _ = synth.render_text("x", fonts[-1], random.Random(0), RenderConfig(force=AUGMENTATIONS),
                                 degraded=True)
    assert image.shape[0] == HEIGHT


def test_bad_render_config():
    with pytest.raises(ValueError, match="force"):
        RenderConfig(force=("sparkles",))
    with pytest.raises(ValueError, match="degraded_prob"):
        RenderConfig(degraded_prob=2.0)
    with pytest.raises(ValueError, match="split"):
        SynthGenerator("validation")


def test_dataset_batches_and_resume():
    _fonts_or_skip()
    ds = SynthDataset(4, seed=1, pool_batches=3, mix={"word": 1.0})
    it = iter(ds)
    batches = [next(it) for _ in range(5)]
    for b in batches:
        assert b.images.shape[:3] == (4, 1, HEIGHT) and b.images.dtype == torch.float32
        assert b.images.min() >= -1 and b.images.max() <= 1
        assert int(b.widths.max()) == b.images.shape[-1] and len(b.texts) == 4
    resumed = next(iter(SynthDataset(4, seed=1, pool_batches=3, mix={"word": 1.0}, start_batch=4)))
    assert resumed.texts == batches[4].texts and torch.equal(resumed.images, batches[4].images)


def test_dataset_worker_seeding():
    _fonts_or_skip()
    ds = SynthDataset(2, seed=3, pool_batches=1, mix={"word": 1.0})
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    it = iter(loader)
    a, b = next(it), next(it)
    assert a.texts != b.texts  # the two workers draw different streams


def test_widen_batch_is_a_wider_pad_batch():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (HEIGHT, w), dtype=np.uint8) for w in (9, 17, 12)]
    batch = pad_batch(arrays, ["a", "b", "c"])
    wide = widen_batch(batch, 30)
    expected = pad_batch(arrays, ["a", "b", "c"], min_width=30)
    assert torch.equal(wide.images, expected.images) and torch.equal(wide.widths, expected.widths)
    assert wide.texts == expected.texts and widen_batch(batch, 17) is batch
    with pytest.raises(ValueError, match="width must be at least"):
        widen_batch(batch, 16)


def test_dataset_ranks_draw_their_own_streams():
    _fonts_or_skip()

    def pool(**kw):  # the first pool: pool_batches batches of 2
        it = iter(SynthDataset(2, seed=1, pool_batches=3, mix={"word": 1.0}, **kw))
        return [next(it) for _ in range(3)]

    single, rank0, rank1 = pool(), pool(rank=0, world_size=2), pool(rank=1, world_size=2)
    # Rank 0 draws the single-process samples (in another batch order); rank 1 draws others.
    assert sorted(t for b in rank0 for t in b.texts) == sorted(t for b in single for t in b.texts)
    assert [b.texts for b in rank0] != [b.texts for b in rank1]
    with pytest.raises(ValueError, match="rank"):
        SynthDataset(2, rank=2, world_size=2)


def test_render_heldout_subsets():
    _fonts_or_skip("test")
    for subset in HELDOUT_SUBSETS:
        items = synth.render_heldout(subset, 3, seed=0)
        again = synth.render_heldout(subset, 3, seed=0)
        assert [t for _, t in items] == [t for _, t in again]
        for image, text in items:
            assert image.ndim == 2 and text
            if subset == "lines":
                assert " " in text
