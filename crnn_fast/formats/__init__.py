"""What the kernels take as input, below crnn_fast.ops: the model's image-batch contract (HEIGHT, normalize,
Batch, pad_batch), lexicons (the trie of token-id words and its flat tensors) and character n-gram LMs (their
tensors). crnn_fast.decoding builds on the ops and re-exports the lexicon and LM types."""

from .image_batch import HEIGHT, INPUT_SPEC, Batch, normalize, pad_batch, widen_batch
from .lexicon import LexiconTrie, TrieTensors, compile_trie, encode_lexicon
from .lm import BoundLM, CharNgramLM, LMTensors

__all__ = ["HEIGHT", "INPUT_SPEC", "Batch", "BoundLM", "CharNgramLM", "LMTensors", "LexiconTrie", "TrieTensors",
           "compile_trie", "encode_lexicon", "normalize", "pad_batch", "widen_batch"]
