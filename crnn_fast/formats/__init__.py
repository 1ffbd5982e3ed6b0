"""What the decoding kernels take as input, below crnn_fast.ops: lexicons (the trie of token-id words and its flat
tensors) and character n-gram LMs (their tensors). crnn_fast.decoding builds on the ops and re-exports these."""

from .lexicon import LexiconTrie, TrieTensors, compile_trie, encode_lexicon
from .lm import BoundLM, CharNgramLM, LMTensors

__all__ = ["BoundLM", "CharNgramLM", "LMTensors", "LexiconTrie", "TrieTensors", "compile_trie", "encode_lexicon"]
