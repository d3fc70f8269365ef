"""Weight-only compression of whole graphs (LLM decoder, optionally the encoders):
ONNX Runtime's MatMulNBits for ONNX bundles, NNCF for OpenVINO IR, ai-edge-quantizer for LiteRT."""

from __future__ import annotations

from pathlib import Path

import onnx

LARGE_MODEL_BYTES = 1_800_000_000


# MatMulNBits' accuracy level per weight width: both compute in int8 (level 4). ONNX Runtime's fp32-compute
# path dequantizes 8-bit weights per call (1.32, 2 threads, 1 x 2048 x 8192: fp32 MatMul 2.9 ms, 8-bit level
# 0 68 ms, level 4 0.78 ms), and for 4-bit weights in blocks of 128 it is 2.3x slower (4 Llama-1B-shaped
# layers at one row: level 0 13.8 ms, level 4 5.9 ms; `python scripts/decode_kernels.py stack`)
ACCURACY_LEVEL = {8: 4, 4: 4}
# Input channels per scale, per weight width. 4-bit weights in blocks of 128, not 32: the same one-row stack
# took 7.2 ms instead of 11.7 in OpenVINO (dynamic quantization: 4.7 vs 9.4; ONNX Runtime 5.9 vs 8.0); 128 is
# also NNCF's and most int4 LLM recipes' default. 8-bit weights stay at 32: OpenVINO's exact kernel is slower
# at 128 (21.5 vs 15.1 ms). docs/benchmarks.md
BLOCK_SIZE = {8: 32, 4: 128}
GROUP_SIZES = (128, 64, 32, 16, 8)  # NNCF's int4 groups must divide a layer's input channels: the largest that does


def compress_onnx(path: Path, bits: int, block_size: int | None = None, accuracy_level: int | None = None) -> None:
    """Replace every MatMul with a constant weight by MatMulNBits (`bits` 8 or 4, symmetric, blocks of
    `block_size` input channels, default `BLOCK_SIZE[bits]`; accuracy level default `ACCURACY_LEVEL[bits]`),
    in place."""
    import logging

    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    before = onnx.load(str(path), load_external_data=False)
    old_data = {e.value for t in before.graph.initializer for e in t.external_data if e.key == "location"}
    model = onnx.load(str(path))
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size or BLOCK_SIZE[bits], is_symmetric=True,
                                     accuracy_level=ACCURACY_LEVEL[bits] if accuracy_level is None else accuracy_level)
    quantizer.process()
    for name in old_data:  # the fp32 weights file is replaced, not left behind
        (path.parent / name).unlink(missing_ok=True)
    large = quantizer.model.model.ByteSize() > LARGE_MODEL_BYTES if not old_data else True
    quantizer.model.save_model_to_file(str(path), use_external_data_format=large)


def compress_openvino(model, bits: int):
    """NNCF weight compression of an `openvino.Model`: int8 per channel, or int4 in groups of
    `BLOCK_SIZE[4]` (fewer when a layer's input channels need it: NNCF requires the group size to divide them)."""
    import contextlib
    import logging
    import sys

    import nncf

    logging.getLogger("nncf").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(sys.stderr):  # NNCF draws tables and progress bars on stdout
        if bits == 8:
            return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM)
        error: Exception | None = None
        for group in GROUP_SIZES:
            try:
                return nncf.compress_weights(model.clone(), mode=nncf.CompressWeightsMode.INT4_SYM,
                                             group_size=group, ratio=1.0, all_layers=True)
            except Exception as exc:  # NNCF raises its own error types for indivisible channels
                error = exc
    raise RuntimeError(f"int4 compression failed for every group size: {error}")


def compress_litert(path: Path) -> None:
    """int8 weights with float32 activations (LiteRT's dynamic-range recipe, `dynamic_wi8_afp32`) for every
    fully connected and convolution weight of a `.tflite` graph, in place, with ai-edge-quantizer. Unlike the
    ONNX projector it quantizes the router too (the recipe covers every such layer)."""
    import contextlib
    import io

    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(str(path))
    qt.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    with contextlib.redirect_stdout(io.StringIO()):  # it prints sizes and times
        qt.quantize().export_model(str(path), overwrite=True)
