"""The beam-search options checked up front, with the same bounds and messages, by every entry point (the
reference, the op's python face, CTCDecoder, Recognizer, the CLI); the C++ ops check them again with the same
numbers (csrc/ctc_beam_search_checks.h)."""

from __future__ import annotations

from ._checks import check_int, check_real
from .formats.lexicon import LexiconTrie

# The bounds of the options.
# MAX_BEAM_WIDTH: the search costs about linearly in the beam; at this width a 400-frame line of 96 classes takes
# ~1.3 s on one core. MAX_NBEST: no search keeps more hypotheses than its beam. MAX_LM_WEIGHT and
# MAX_INSERTION_BONUS keep every score finite: a score sums at most T terms of lm_weight * ln P_lm + insertion_bonus,
# and ln P_lm is at most order * MAX_ABS_LOG10_BACKOFF * ln 10 (crnn_fast/formats/lm.py), so no sum can reach
# +inf (where the reference and the kernels would stop agreeing: inf - inf is NaN).
MAX_BEAM_WIDTH = 4096
MAX_NBEST = MAX_BEAM_WIDTH
MAX_LM_WEIGHT = 1e4
MAX_INSERTION_BONUS = 1e4


def check_beam_width(beam_width, name: str = "beam_width") -> int:
    """An int in [1, MAX_BEAM_WIDTH]; errors name the argument (`name`: "beam", "--beam" for other faces)."""
    beam_width = check_int(beam_width, name, low=1)
    if beam_width > MAX_BEAM_WIDTH:
        raise ValueError(f"{name} must be <= {MAX_BEAM_WIDTH}, got {beam_width}")
    return beam_width


def check_beam_search_options(beam_width, nbest, top_k, beam_threshold, blank_skip_threshold, token_min_logp,
                              lm_weight, insertion_bonus):
    """The scalar options of a CTC beam search, checked (errors name the argument) and normalised.

    beam_width in [1, MAX_BEAM_WIDTH], nbest in [1, MAX_NBEST], top_k >= 1, beam_threshold >= 0,
    blank_skip_threshold in (0, 1], token_min_logp not NaN, lm_weight in [0, MAX_LM_WEIGHT], |insertion_bonus| <=
    MAX_INSERTION_BONUS."""
    beam_width = check_beam_width(beam_width)
    nbest = check_int(nbest, "nbest", low=1)
    if nbest > MAX_NBEST:
        raise ValueError(f"nbest must be <= {MAX_NBEST}, got {nbest}")
    if top_k is not None:
        top_k = check_int(top_k, "top_k", low=1)
    if beam_threshold is not None:
        beam_threshold = check_real(beam_threshold, "beam_threshold", finite=False)
        if beam_threshold < 0:
            raise ValueError(f"beam_threshold must be >= 0, got {beam_threshold}")
    if blank_skip_threshold is not None:
        blank_skip_threshold = check_real(blank_skip_threshold, "blank_skip_threshold")
        if not 0.0 < blank_skip_threshold <= 1.0:
            raise ValueError(f"blank_skip_threshold must be in (0, 1], got {blank_skip_threshold}")
    if token_min_logp is not None:  # -inf: no floor
        token_min_logp = check_real(token_min_logp, "token_min_logp", finite=False)
    lm_weight = check_real(lm_weight, "lm_weight")
    if lm_weight < 0:
        # A negative weight would turn an LM's -inf (forbidden token) into +inf.
        raise ValueError(f"lm_weight must be >= 0, got {lm_weight}")
    if lm_weight > MAX_LM_WEIGHT:
        raise ValueError(f"lm_weight must be <= {MAX_LM_WEIGHT:g}, got {lm_weight:g}")
    insertion_bonus = check_real(insertion_bonus, "insertion_bonus")
    if abs(insertion_bonus) > MAX_INSERTION_BONUS:
        raise ValueError(f"insertion_bonus must be in [-{MAX_INSERTION_BONUS:g}, {MAX_INSERTION_BONUS:g}], "
                         f"got {insertion_bonus:g}")
    return beam_width, nbest, top_k, beam_threshold, blank_skip_threshold, token_min_logp, lm_weight, insertion_bonus


def check_lexicon(lexicon, word_separator, num_classes: int, blank: int):
    """(LexiconTrie or None, word_separator or None), checked against C classes and the blank."""
    C = num_classes
    if word_separator is not None:
        word_separator = check_int(word_separator, "word_separator")
        if not 0 <= word_separator < C:
            raise ValueError(f"word_separator must be in [0, {C}), got {word_separator}")
        if word_separator == blank:
            raise ValueError(f"word_separator must differ from blank ({blank})")
        if lexicon is None:
            raise ValueError("word_separator requires a lexicon")
    if lexicon is None:
        return None, word_separator
    trie = lexicon if isinstance(lexicon, LexiconTrie) else LexiconTrie(lexicon)
    bad = sorted(t for t in trie.token_ids if not 0 <= t < C)
    if bad:
        raise ValueError(f"lexicon holds token ids outside [0, {C}): {bad}")
    if blank in trie.token_ids:
        raise ValueError(f"lexicon words must not contain the blank id {blank}")
    if word_separator is not None and word_separator in trie.token_ids:
        raise ValueError(f"lexicon words must not contain the word_separator id {word_separator}")
    return trie, word_separator
