"""PyTorch to ONNX / OpenVINO bundles (needs the `export` extra)."""
