"""Shipping a model: its ONNX graphs (`onnx_export`, written with PyTorch) and running them on ONNX Runtime with numpy
and Pillow alone (`runtime`).  Importing this package imports no PyTorch, so a machine without it can run
`from fashion_fastai.shipped import OnnxModel`."""
from fashion_fastai.shipped.runtime import INPUT, OnnxModel, OnnxScorer, import_onnxruntime, session

__all__ = ['INPUT', 'OnnxModel', 'OnnxScorer', 'import_onnxruntime', 'session']
