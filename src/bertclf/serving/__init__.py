"""Using a trained model: prediction, its file I/O, speed measurement and ONNX export."""
