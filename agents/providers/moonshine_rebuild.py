"""Moonshine's shipped ORT-format files rebuilt as ONNX models onnxruntime can optimise: the int8
weights dequantized once at load (not on every run), and, for the decoder, its matrix products
quantized back to int8 by onnxruntime's dynamic quantizer. See ``docs/speech_recognition.md``,
"The fast path" and "The int8 decoder". Blocking and CPU-bound; ``moonshine_decoder`` calls it
when it loads the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _flatbuffers_module() -> Any:
    # onnxruntime's own tools package puts its generated ORT-format schema bindings
    # (``ort_flatbuffers_py``) on ``sys.path`` when imported; we use them the same way.
    import onnxruntime.tools.ort_format_model  # noqa: F401
    import ort_flatbuffers_py.fbs as fbs  # type: ignore[import-not-found]

    return fbs


def ort_to_onnx(path: Path) -> bytes:
    """Rebuild an ORT-format model as an ONNX model, folding initializer-only ``Cast``/``Mul``/
    ``Add`` chains (the int8 dequantization) and the weight ``Transpose`` nodes of subgraphs
    into float32 initializers of the main graph. Raises ImportError without ``onnx``."""
    import onnx
    from onnx import helper, numpy_helper

    fbs = _flatbuffers_module()
    from ort_flatbuffers_py.fbs.AttributeType import (  # type: ignore[import-not-found]
        AttributeType as AT,
    )
    from ort_flatbuffers_py.fbs.TensorTypeAndShape import (  # type: ignore[import-not-found]
        TensorTypeAndShape,
    )

    def s(b: bytes | None) -> str:
        return b.decode() if b is not None else ""

    def tensor(t: Any) -> onnx.TensorProto:
        p = onnx.TensorProto(name=s(t.Name()), data_type=t.DataType())
        if t.DimsLength():
            p.dims.extend(int(d) for d in t.DimsAsNumpy())
        if t.RawDataLength():
            p.raw_data = t.RawDataAsNumpy().tobytes()
        p.string_data.extend(t.StringData(j) for j in range(t.StringDataLength()))
        return p

    def value_info(v: Any) -> onnx.ValueInfoProto:
        ti = v.Type()
        if ti is None or ti.ValueType() != 1:  # not a tensor: leave the type to inference
            return helper.make_empty_tensor_value_info(s(v.Name()))
        tt = TensorTypeAndShape()
        tab = ti.Value()
        tt.Init(tab.Bytes, tab.Pos)
        shape = tt.Shape()
        dims: list[int | str | None] | None = None
        if shape is not None:
            dims = []
            for j in range(shape.DimLength()):
                dv = shape.Dim(j).Value()
                kind = 0 if dv is None else dv.DimType()
                dims.append(None if kind == 0 else dv.DimValue() if kind == 1 else s(dv.DimParam()))
        return helper.make_tensor_value_info(s(v.Name()), tt.ElemType(), dims)

    def attribute(a: Any) -> onnx.AttributeProto:
        p = onnx.AttributeProto(name=s(a.Name()))
        t = a.Type()
        A = onnx.AttributeProto
        if t == AT.FLOAT:
            p.type, p.f = A.FLOAT, a.F()
        elif t == AT.INT:
            p.type, p.i = A.INT, a.I()
        elif t == AT.STRING:
            p.type, p.s = A.STRING, a.S()
        elif t == AT.TENSOR:
            p.type = A.TENSOR
            p.t.CopyFrom(tensor(a.T()))
        elif t == AT.GRAPH:
            p.type = A.GRAPH
            p.g.CopyFrom(graph(a.G(), p.name))
        elif t == AT.FLOATS:
            p.type = A.FLOATS
            p.floats.extend(a.FloatsAsNumpy().tolist() if a.FloatsLength() else [])
        elif t == AT.INTS:
            p.type = A.INTS
            p.ints.extend(a.IntsAsNumpy().tolist() if a.IntsLength() else [])
        elif t == AT.STRINGS:
            p.type = A.STRINGS
            p.strings.extend(a.Strings(j) for j in range(a.StringsLength()))
        else:
            raise ValueError(f"unsupported attribute type {t} on {p.name!r}")
        return p

    def graph(g: Any, name: str) -> onnx.GraphProto:
        if g.SparseInitializersLength():
            raise ValueError("sparse initializers are not supported")
        args = {s(g.NodeArgs(j).Name()): g.NodeArgs(j) for j in range(g.NodeArgsLength())}
        nodes = []
        for j in range(g.NodesLength()):
            n = g.Nodes(j)
            if n.Type() != 0:
                raise ValueError("fused nodes are not supported")
            node = helper.make_node(
                s(n.OpType()),
                [s(n.Inputs(k)) for k in range(n.InputsLength())],
                [s(n.Outputs(k)) for k in range(n.OutputsLength())],
                name=s(n.Name()),
                domain=s(n.Domain()),
            )
            node.attribute.extend(attribute(n.Attributes(k)) for k in range(n.AttributesLength()))
            nodes.append(node)
        return helper.make_graph(
            nodes,
            name,
            [value_info(args[s(g.Inputs(j))]) for j in range(g.InputsLength())],
            [value_info(args[s(g.Outputs(j))]) for j in range(g.OutputsLength())],
            initializer=[tensor(g.Initializers(j)) for j in range(g.InitializersLength())],
        )

    buf = path.read_bytes()
    session = fbs.InferenceSession.InferenceSession.GetRootAs(buf, 0)
    model = session.Model()
    if model is None:
        raise ValueError(f"{path} holds no model")
    opsets = [
        helper.make_opsetid(s(model.OpsetImport(j).Domain()), model.OpsetImport(j).Version())
        for j in range(model.OpsetImportLength())
    ]
    main = graph(model.Graph(), "main")
    _fold_weights(main, numpy_helper, helper)
    proto = helper.make_model(main, opset_imports=opsets, ir_version=model.IrVersion())
    return bytes(proto.SerializeToString())


def quantize_matmuls(model: bytes) -> bytes:
    """``model`` (ONNX bytes, as :func:`ort_to_onnx` makes them) with every ``MatMul`` against a
    constant weight, subgraphs included, turned into an int8 one by onnxruntime's dynamic
    quantizer: int8 weights, activations quantized on each run. For the decoder, whose
    per-token step reads every weight once, that is a quarter of the memory traffic.

    This is what ``onnxruntime.quantization.quantize_dynamic`` does, less its disk round trips:
    it writes the float32 model twice to the temporary directory for shape inference (about
    440 MB for the decoder, more than a pod's ``/tmp``) and the result once more. Here shape
    inference runs in memory and the quantizer's model is serialised directly. Raises
    ImportError without ``onnx``."""
    import onnx
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.quant_utils import (
        QuantizationMode,
        QuantType,
        add_infer_metadata,
        update_opset_version,
    )

    proto = onnx.shape_inference.infer_shapes(onnx.load_from_string(model))
    add_infer_metadata(proto)
    proto = update_opset_version(proto, QuantType.QInt8)
    quantizer = ONNXQuantizer(
        proto,
        False,  # per_channel
        False,  # reduce_range
        QuantizationMode.IntegerOps,
        False,  # static
        QuantType.QInt8,  # weights
        QuantType.QUInt8,  # activations (the only type dynamic quantization supports)
        None,  # tensors_range
        [],  # nodes_to_quantize: all
        [],  # nodes_to_exclude
        ["MatMul"],
        {"EnableSubgraph": True, "MatMulConstBOnly": True},
    )
    quantizer.quantize_model()
    return bytes(quantizer.model.model.SerializeToString())


def _fold_weights(main: Any, numpy_helper: Any, helper: Any) -> None:
    """Fold the main graph's initializer-only Cast/Mul/Add chains, then hoist subgraph
    ``Transpose`` nodes of main-graph constants into main-graph initializers (each branch of an
    ``If`` would otherwise keep its own transposed copy)."""
    consts: dict[str, np.ndarray] = {
        t.name: numpy_helper.to_array(t) for t in main.initializer
    }
    kept = []
    for node in main.node:
        ins = list(node.input)
        if node.op_type in ("Cast", "Mul", "Add") and ins and all(i in consts for i in ins):
            if node.op_type == "Cast":
                to = next(a.i for a in node.attribute if a.name == "to")
                consts[node.output[0]] = consts[ins[0]].astype(
                    helper.tensor_dtype_to_np_dtype(to)
                )
            elif node.op_type == "Mul":
                consts[node.output[0]] = np.multiply(consts[ins[0]], consts[ins[1]])
            else:
                consts[node.output[0]] = np.add(consts[ins[0]], consts[ins[1]])
            continue
        kept.append(node)
    for node in kept:
        for a in node.attribute:
            if a.type != a.GRAPH:
                continue
            sub_kept = []
            for sub in a.g.node:
                if sub.op_type == "Transpose" and len(sub.input) == 1 and sub.input[0] in consts:
                    perm = [list(x.ints) for x in sub.attribute if x.name == "perm"]
                    out = sub.output[0]
                    if out not in consts:
                        value = consts[sub.input[0]]
                        consts[out] = np.ascontiguousarray(
                            value.transpose(perm[0]) if perm else value.T
                        )
                    continue
                sub_kept.append(sub)
            del a.g.node[:]
            a.g.node.extend(sub_kept)
    used = {i for n in kept for i in n.input}
    for n in kept:
        for a in n.attribute:
            if a.type == a.GRAPH:
                used.update(i for sub in a.g.node for i in sub.input)
    used.update(o.name for o in main.output)
    del main.node[:]
    main.node.extend(kept)
    del main.initializer[:]
    main.initializer.extend(
        numpy_helper.from_array(v, name) for name, v in consts.items() if name in used
    )
