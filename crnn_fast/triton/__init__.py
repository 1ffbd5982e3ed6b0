"""Triton kernels of crnn_fast (importing a submodule needs the `triton` package).

lstm: the fused LSTM recurrence, forward and backward (BPTT), one launch per layer.
The ops that wrap them (fake impls, autograd, backend choice) live in crnn_fast.ops.
"""
