"""Text-recognition models."""

from .crnn import CRNN, CRNN_CONFIGS, BidirectionalLSTM, CRNNConfig
from .onnx import OnnxCRNN, export_onnx, load_onnx

__all__ = ["CRNN", "CRNN_CONFIGS", "BidirectionalLSTM", "CRNNConfig", "OnnxCRNN", "export_onnx", "load_onnx"]
