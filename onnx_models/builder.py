"""A small builder of ONNX nodes for the fusions that add subgraphs (window.py, split.py).

Every name it makes carries one prefix, so a fusion's nodes and constants are easy to find
in the stored graph and never collide with the exporter's or another fusion's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    """Nodes and int64 constants under one name prefix; a constant is made once per name."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.nodes = prefix, list[onnx.NodeProto]()
        self.consts: dict[str, onnx.TensorProto] = {}

    def c(self, name: str, value: object) -> str:
        full = f"{self.prefix}_{name}"
        if full not in self.consts:
            self.consts[full] = numpy_helper.from_array(np.asarray(value, dtype=np.int64), full)
        return full

    def op(self, kind: str, inputs: list[str], out: str, **attrs: Any) -> str:
        full = f"{self.prefix}_{out}"
        self.nodes.append(helper.make_node(kind, inputs, [full], name=f"{self.prefix}/{out}",
                                           **attrs))
        return full

    def vec(self, scalar: str, out: str) -> str:
        """`scalar` as a 1-element vector, for shapes and pads."""
        return self.op("Unsqueeze", [scalar, self.c("axis0", [0])], out)

    def if_else(self, cond: str, then: str, node: onnx.NodeProto) -> onnx.NodeProto:
        """If(cond): this builder's nodes, giving `then`; else: `node` as it was. The If
        takes `node`'s (float) output name, so it replaces `node` in place."""
        plain = onnx.NodeProto()
        plain.CopyFrom(node)
        plain.output[0] = f"{self.prefix}_else"
        value = helper.make_tensor_value_info
        return helper.make_node(
            "If", [cond], list(node.output[:1]), name=f"{self.prefix}/If",
            then_branch=helper.make_graph(self.nodes, self.prefix + "_then", [],
                                          [value(then, TensorProto.FLOAT, None)]),
            else_branch=helper.make_graph([plain], self.prefix + "_else", [],
                                          [value(plain.output[0], TensorProto.FLOAT, None)]),
        )

    def batch_and_tokens(self) -> tuple[str, str]:
        """The input's batch size and sequence length (scalars), read off `input_ids`."""
        shape = self.op("Shape", ["input_ids"], "shape")
        return (self.op("Gather", [shape, self.c("zero", 0)], "batch"),
                self.op("Gather", [shape, self.c("one", 1)], "tokens"))
