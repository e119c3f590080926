"""The committed stubs (client/v1, imported as senti.v1) and the OpenAPI document (server/http/openapi.json) are
what protos/senti/v1/senti.proto generates today, and the document describes what the HTTP app serves."""
import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2

from protos import openapi
from protos.generate import GENERATED, OPENAPI, STUBS, generate, generate_openapi
from senti.v1 import senti_pb2 as pb

VERBS = ("get", "put", "post", "delete", "patch")


def _document() -> dict:
    return json.loads(OPENAPI.read_text(encoding="utf-8"))


def _operations(document: dict) -> set[tuple[str, str]]:
    return {(verb.upper(), path) for path, item in document["paths"].items() for verb in item if verb in VERBS}


def test_committed_stubs_are_up_to_date(tmp_path: Path):
    generate(tmp_path)
    for name in GENERATED:
        fresh = (tmp_path / name).read_text()
        committed = (STUBS / name).read_text()
        assert fresh == committed, f"client/v1/{name} is stale: run `make proto` and commit the result"


def test_openapi_is_up_to_date(tmp_path: Path):
    fresh = tmp_path / "openapi.json"
    generate_openapi(fresh)
    assert fresh.read_bytes() == OPENAPI.read_bytes(), \
        "server/http/openapi.json is stale: run `make proto` and commit the result"


def test_openapi_paths_are_the_served_routes():
    """Every documented verb + path is served, and every served one is documented (but /openapi.json and the page)."""
    from senti.server.http import app as http_app
    from senti.server.http.routes import routes

    documented = _operations(_document())
    from_proto = {(route.verb, route.path) for route in routes()}
    assert documented == from_proto | set(openapi.HEALTH_PATHS)

    table = http_app.create_app(SimpleNamespace(unary=lambda rpc: None, slot=None), None, lambda: True, 1).routes
    served = {(verb, route.path) for route in table for verb in getattr(route, "methods", None) or () if verb != "HEAD"}
    assert served - {("GET", "/openapi.json"), ("GET", "/")} == documented


def test_openapi_streaming_rpc_is_ndjson_both_ways():
    operation = _document()["paths"]["/v1/predict:stream"]["post"]
    (request,) = operation["requestBody"]["content"].items()
    (response,) = operation["responses"]["200"]["content"].items()
    assert request[0] == response[0] == "application/x-ndjson"
    assert request[1]["schema"]["$ref"].endswith("/senti.v1.PredictStreamRequest")
    assert response[1]["schema"]["$ref"].endswith("/senti.v1.PredictStreamResponse")


def test_every_senti_element_has_a_description():
    """The .proto comments reach the document: every senti.v1 message, field, enum and RPC has one."""
    document = _document()
    for name, schema in document["components"]["schemas"].items():
        if name.startswith("senti.v1."):
            assert schema.get("description"), name
            for field, sub in schema.get("properties", {}).items():
                assert sub.get("description"), f"{name}.{field}"
    for path, item in document["paths"].items():
        for verb, operation in item.items():
            assert operation.get("summary") and operation.get("description"), f"{verb} {path}"


def test_openapi_is_valid():
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(_document())


def _strict(components: dict) -> dict:
    """The components with unknown properties refused, so a name the server writes but the schema lacks fails."""
    components = copy.deepcopy(components)
    for schema in components["schemas"].values():
        if "properties" in schema:
            schema.setdefault("additionalProperties", False)
    return components


@pytest.mark.parametrize("message", [
    pb.PredictRequest(texts=["很好吃"], strict=True),
    pb.PredictStreamRequest(id="1", text="一般", strict=True),
    pb.PredictResponse(predictions=[pb.Prediction(
        label="positive", score=0.9, scores=[pb.LabelScore(label="positive", score=0.9)],
        polarity=pb.POLARITY_POSITIVE, truncated=True, tokens=7)],
        metadata=pb.Metadata(tokenize_us=1, queue_us=2, inference_us=3, total_us=2 ** 40, batch_size=4, cache_hits=1)),
    pb.PredictStreamResponse(id="a", error=status_pb2.Status(code=3, message="empty text")),
    pb.PredictStreamResponse(id="b", prediction=pb.Prediction(label="负面", polarity=pb.POLARITY_NEGATIVE)),
    pb.ClassifyZeroShotRequest(texts=["x"], labels=["体育"], hypothesis_template="这是{}", multi_label=True,
                               strict=True),
    pb.ClassifyZeroShotResponse(results=[pb.ZeroShotResult(labels=[pb.LabelScore(label="体育", score=0.5)])],
                                metadata=pb.Metadata()),
    pb.GetModelInfoResponse(models=[pb.ModelInfo(
        name="m", kind="nli", tasks=[pb.TASK_SENTIMENT, pb.TASK_ZERO_SHOT], labels=["a"], max_tokens=512,
        backend="b", quantization="none", default_template="{}", provenance={"k": "v"}, metrics={"acc": 0.9})],
        limits=pb.Limits(max_texts_per_request=1, max_labels_per_request=2, max_chars_per_text=3,
                         max_stream_in_flight=4), execution_mode="batched", version="0.1.0"),
], ids=lambda message: message.DESCRIPTOR.name)
def test_openapi_schemas_describe_proto3_json(message):
    """The server's proto3 JSON of each message (as app.to_json writes it) validates against its schema."""
    jsonschema = pytest.importorskip("jsonschema")
    components = _strict(_document()["components"])
    schema = {"$ref": f"#/components/schemas/{message.DESCRIPTOR.full_name}", "components": components}
    body = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    jsonschema.Draft202012Validator(schema).validate(body)
