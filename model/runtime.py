"""ONNX Runtime sessions and the padded forward pass over a batch of encoded inputs."""
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from .types import Encoded


def backend_name() -> str:
    """Human-readable name of the inference backend."""
    return f"onnxruntime {ort.__version__} CPUExecutionProvider"


def create_session(model_path: Path, intra_op_threads: int,
                   shared: dict[str, ort.OrtValue] | None = None) -> ort.InferenceSession:
    """One CPU session with the graph fully optimised and a fixed thread count.

    `shared` initializers replace the model's own of the same name: one copy in memory for every
    session that uses them (names the model lacks are ignored).
    """
    options = ort.SessionOptions()
    for name, value in (shared or {}).items():
        options.add_initializer(name, value)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads burn the other sessions' cores between batches; let them sleep.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])


def load_shared_initializers(path: Path) -> dict[str, ort.OrtValue]:
    """A bundle's shared weights (.npz of initializer name -> array) as OrtValues for create_session.

    The arrays must outlive every session that uses them: an OrtValue made from numpy keeps its array.
    """
    with np.load(path, allow_pickle=False) as data:
        return {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(data[name])) for name in data.files}


def pad_batch(items: Sequence[Encoded], pad_id: int, pad_to: int | None = None) -> dict[str, np.ndarray]:
    """Pads a batch to its longest item (or to `pad_to`), never beyond what the batch needs."""
    width = pad_to or max(item.length for item in items)
    input_ids = np.full((len(items), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(items), width), dtype=np.int64)
    token_type_ids = np.zeros((len(items), width), dtype=np.int64)
    for row, item in enumerate(items):
        input_ids[row, : item.length] = item.ids
        attention_mask[row, : item.length] = 1
        token_type_ids[row, : item.length] = item.type_ids
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


class OnnxRunner:
    """Runs one session over padded batches and returns one output row per item."""

    def __init__(self, model_path: Path, input_names: Sequence[str], output_name: str, pad_id: int,
                 intra_op_threads: int = 1, pad_to: int | None = None,
                 shared: dict[str, ort.OrtValue] | None = None):
        self.session = create_session(model_path, intra_op_threads, shared)
        # Batches come in many shapes; without shrinkage the arena keeps the peak of every shape it has seen
        # (measured: RSS 1.46 GB vs 0.27 GB after 60 length-grouped batches, same throughput).
        self.run_options = ort.RunOptions()
        self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.input_names = tuple(input_names)
        self.output_name = output_name
        self.pad_id = pad_id
        # Only the seed design's reproduction pads every input to a fixed width.
        self.pad_to = pad_to

    def run(self, items: Sequence[Encoded]) -> np.ndarray:
        """Forward pass of a batch: returns an array with one row per item."""
        feeds = pad_batch(items, self.pad_id, self.pad_to)
        outputs = self.session.run([self.output_name], {name: feeds[name] for name in self.input_names},
                                   self.run_options)
        return outputs[0]
