"""ORT's own peak GEMM rate on the encoder's feed-forward shape: the numerator of the physical bound."""
from __future__ import annotations

import threading
import time

import numpy as np
import onnxruntime as ort


def _gemm_model(kind: str, m: int, k: int, n: int):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    if kind == "int8":
        a = helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])
        b = numpy_helper.from_array(rng.integers(-127, 127, (k, n), dtype=np.int8), "B")
        y = helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
    else:
        a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
        b = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "B")
        y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
    graph = helper.make_graph([node], "gemm", [a], [y], initializer=[b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def gemm_peak(kind: str, sessions: int, threads: int, seconds: float, m: int = 2048, k: int = 384,
              n: int = 1536) -> dict:
    """Ops/s (2 per MAC) of ORT's own GEMM kernels on the encoder's feed-forward shape."""
    blob = _gemm_model(kind, m, k, n)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    runs = [ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"]) for _ in range(sessions)]
    rng = np.random.default_rng(1)
    a = (rng.integers(0, 255, (m, k), dtype=np.uint8) if kind == "int8"
         else rng.standard_normal((m, k)).astype(np.float32))
    for s in runs:
        s.run(None, {"A": a})
    count = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(s):
        while time.monotonic() < deadline:
            s.run(None, {"A": a})
            with lock:
                count[0] += 1

    started = time.monotonic()
    ts = [threading.Thread(target=worker, args=(s,)) for s in runs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - started
    ops = 2.0 * m * k * n * count[0] / wall
    return {"kind": kind, "shape": [m, k, n], "sessions": sessions, "threads": threads, "gops": round(ops / 1e9, 1)}
