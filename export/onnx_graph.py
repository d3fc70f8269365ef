"""A small builder for hand-written ONNX graphs from standard ops (opset 21)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .quantize import QuantizedWeight, quantize_weight

OPSET = 21
IR_VERSION = 10


class GraphBuilder:
    """Collects nodes and initializers; `op` returns the output name(s) of the node it adds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = set()
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, name: str, array: np.ndarray) -> str:
        """Add an initializer once (a second call with the same name reuses it)."""
        if name not in self._names:
            self._names.add(name)
            self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def int4_const(self, name: str, values: np.ndarray) -> str:
        if name not in self._names:
            self._names.add(name)
            self.initializers.append(helper.make_tensor(name, TensorProto.INT4, values.shape,
                                                        values.astype(np.int8).ravel().tolist()))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs) -> str | list[str]:
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def input(self, name: str, dims: list, dtype: int = TensorProto.FLOAT) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, dtype, dims))
        return name

    def output(self, value: str, name: str, dims: list, dtype: int = TensorProto.FLOAT) -> str:
        """Expose `value` as graph output `name` by renaming it (no Identity, so backends keep
        exactly one name per output tensor)."""
        for node in self.nodes:
            for field in (node.input, node.output):
                for i, n in enumerate(field):
                    if n == value:
                        field[i] = name
        self.outputs.append(helper.make_tensor_value_info(name, dtype, dims))
        return name

    def linear(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray | None, mode: str) -> str:
        """x @ W^T + b for a torch-layout weight [out, in]; `mode` fp32 | int8 | int4 (weight-only)."""
        w = np.ascontiguousarray(np.asarray(weight, dtype=np.float32).T)  # [in, out]
        if mode == "fp32":
            w_name = self.const(f"{name}.weight", w)
        else:
            q: QuantizedWeight = quantize_weight(w, 8 if mode == "int8" else 4)
            scale = self.const(f"{name}.weight_scale", q.scale)
            if q.bits == 8:
                values = self.const(f"{name}.weight_q", q.values)
                zero = self.const(f"{name}.weight_zero", np.zeros(q.scale.shape, np.int8))
                w_name = self.op("DequantizeLinear", [values, scale, zero], axis=1)
            else:
                values = self.int4_const(f"{name}.weight_q", q.values)
                w_name = self.op("DequantizeLinear", [values, scale], axis=0, block_size=q.group)
        y = self.op("MatMul", [x, w_name])
        if bias is not None:
            y = self.op("Add", [y, self.const(f"{name}.bias", np.asarray(bias, np.float32))])
        return y

    def layer_norm(self, x: str, name: str, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-5) -> str:
        return self.op("LayerNormalization", [x, self.const(f"{name}.weight", np.asarray(weight, np.float32)),
                                              self.const(f"{name}.bias", np.asarray(bias, np.float32))],
                       axis=-1, epsilon=eps)

    def model(self, doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="smop-edge", doc_string=doc)
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model
