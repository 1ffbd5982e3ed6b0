"""CTC decoding: CTCDecoder (greedy, beam search, lexicon, character n-gram LM), with the lexicon and LM formats
it takes (crnn_fast.formats) re-exported."""

from ..formats.lexicon import LexiconTrie, TrieTensors, compile_trie, encode_lexicon
from ..formats.lm import BoundLM, CharNgramLM, LMTensors
from .decoder import LEXICON_MODES, CTCDecoder, CTCHypothesis

__all__ = [
    "LEXICON_MODES",
    "BoundLM",
    "CTCDecoder",
    "CTCHypothesis",
    "CharNgramLM",
    "LMTensors",
    "LexiconTrie",
    "TrieTensors",
    "compile_trie",
    "encode_lexicon",
]
