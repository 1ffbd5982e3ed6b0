"""Text-recognition models."""

from .crnn import CRNN, CRNN_CONFIGS, BidirectionalLSTM, CRNNConfig

__all__ = ["CRNN", "CRNN_CONFIGS", "BidirectionalLSTM", "CRNNConfig"]
