"""Data handling for text recognition: character sets, ..."""

from .charset import Charset

__all__ = ["Charset"]
