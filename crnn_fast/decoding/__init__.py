"""CTC decoding: CTCDecoder (greedy, beam search, lexicon, character n-gram LM), lexicon tries, CharNgramLM."""

from .decoder import LEXICON_MODES, CTCDecoder, CTCHypothesis  # noqa: I001 (after lm)
from .lexicon import TrieTensors, compile_trie, encode_lexicon
from .lm import BoundLM, CharNgramLM, LMTensors

__all__ = [
    "LEXICON_MODES",
    "BoundLM",
    "CTCDecoder",
    "CTCHypothesis",
    "CharNgramLM",
    "LMTensors",
    "TrieTensors",
    "compile_trie",
    "encode_lexicon",
]
