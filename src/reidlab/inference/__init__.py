"""Using a trained model on your own images: features, gallery search, ONNX export."""
