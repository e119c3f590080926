"""Per-token activation scales (model/recipes/per_token.py): batch-invariant, close to fp32, fused kernels."""
import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from senti.model.recipes.default_bundle import ort_session  # noqa: E402
from senti.model.recipes.onnx_export import export_onnx, quantize_int8  # noqa: E402
from senti.model.recipes.per_token import per_token_activations  # noqa: E402


class TwoLayers(torch.nn.Module):
    """Two MatMuls that share an input (as Q, K and V do) and one that follows a GELU."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = torch.nn.Linear(16, 24), torch.nn.Linear(16, 24), torch.nn.Linear(24, 8)

    def forward(self, x):
        return self.c(torch.nn.functional.gelu(self.a(x) + self.b(x)))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The fp32 export, its per-token INT8 model and ORT's own per-tensor dynamic quantization of it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = tmp_path_factory.mktemp("per_token")
    fp32 = export_onnx(TwoLayers().eval(), {"x": torch.randn(2, 5, 16)}, ["y"], tmp / "m.fp32.onnx")
    per_tensor = tmp / "m.per_tensor.onnx"
    quantize_dynamic(fp32, per_tensor, op_types_to_quantize=["MatMul"], per_channel=True, reduce_range=True,
                     weight_type=QuantType.QInt8)
    return fp32, quantize_int8(fp32, tmp / "m.onnx"), per_tensor


def run(path, x):
    """The model's output for a [batch, tokens, 16] input."""
    return ort_session(path).run(None, {"x": x.astype(np.float32)})[0]


def test_rewrite_replaces_every_dynamic_quantization_with_fused_kernels(models):
    ops = [node.op_type for node in onnx.load(str(models[1])).graph.node]
    assert "DynamicQuantizeLinear" not in ops and "MatMulInteger" not in ops
    assert ops.count("MatMulIntegerToFloat") == 3


def test_a_row_gets_the_same_output_whatever_its_batch_mates(models):
    _, per_token, per_tensor = models
    rng = np.random.default_rng(1)
    text = rng.normal(size=(1, 5, 16))
    loud = 50 * rng.normal(size=(3, 5, 16))  # a batch-mate with 50x larger activations
    alone, batched = run(per_token, text)[0], run(per_token, np.concatenate([text, loud]))[0]
    assert np.abs(alone - batched).max() <= 1e-6
    # the property is the rewrite's: per-tensor scales move the same row measurably
    moved = np.abs(run(per_tensor, text)[0] - run(per_tensor, np.concatenate([text, loud]))[0]).max()
    assert moved > 100 * max(np.abs(alone - batched).max(), 1e-7)


def test_per_token_output_is_close_to_fp32(models):
    fp32, per_token, per_tensor = models
    x = np.random.default_rng(2).normal(size=(4, 7, 16)) * np.array([1, 3, 10, 0.1])[:, None, None]
    want = run(fp32, x)
    error = np.abs(run(per_token, x) - want).max()
    assert error < 0.02 * np.abs(want).max()
    assert error < np.abs(run(per_tensor, x) - want).max()  # finer scales: never worse than one per batch


def test_an_all_zero_input_row_does_not_divide_by_zero(models):
    fp32, per_token, _ = models
    x = np.zeros((2, 3, 16))
    x[1] = 1.0
    got, want = run(per_token, x), run(fp32, x)
    assert np.isfinite(got).all() and np.abs(got - want).max() < 0.02 * np.abs(want).max()


def test_a_graph_without_dynamic_quantization_is_left_alone(models):
    model = onnx.load(str(models[0]))
    before = model.SerializeToString()
    assert per_token_activations(model) == 0 and model.SerializeToString() == before
