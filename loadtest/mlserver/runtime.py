"""An MLServer runtime serving senti's default bundle the way a user of MLServer would: tokenizer, ONNX Runtime
session and sentiment head from the bundle, one batch padded to its longest text per call.

Runs inside MLServer's own virtual environment; it imports only senti's model helpers that need numpy,
tokenizers and onnxruntime (PYTHONPATH points at the repository root).
"""
from pathlib import Path

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse

from senti.model.bundle import load_bundle
from senti.model.heads import DenseHead
from senti.model.runtime import OnnxRunner
from senti.model.tokenize import load_tokenizer


class SentiRuntime(MLModel):
    """V2 inference: input `text` (BYTES, one or more texts) -> output `probs` (FP32, [N, labels])."""

    async def load(self) -> bool:
        bundle = load_bundle(Path(self.settings.parameters.uri))
        self.tokenizer = load_tokenizer(bundle)
        threads = int((self.settings.parameters.extra or {}).get("threads", 2))
        self.runner = OnnxRunner(bundle.model_file("default"), bundle.input_names, bundle.output_name,
                                 self.tokenizer.pad_id, threads)
        self.head = DenseHead.load(bundle.file("head"))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = StringCodec.decode_input(payload.inputs[0])
        encoded = self.tokenizer.encode_batch(list(texts))
        probs = self.head(self.runner.run(encoded)).astype(np.float32)
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("probs", probs)])
