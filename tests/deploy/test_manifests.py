"""The Kubernetes manifests: rendered by Kustomize as `kubectl apply -k` would, valid against the Kubernetes API
schemas of the versions we name (offline, strict: an unknown field fails), and consistent with the server
they run: its settings, ports, health services, drain timings and the memory the bench measured."""
import copy
import json
import re

import pytest
import yaml

from senti.server.settings import Settings
from tests.conftest import ROOT
from tests.deploy.conftest import DEPLOY, K8S, KUBERNETES_VERSIONS, KUSTOMIZATIONS, by_kind, kustomize, module

kubernetes_validate = module("kubernetes_validate", "pip install kubernetes-validate (requirements/dev.in)")


def validate(doc: dict, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {path: kustomize(path) for path in KUSTOMIZATIONS}


@pytest.fixture(scope="module")
def base(rendered):
    return by_kind(rendered["base"])


def container(deployment: dict) -> dict:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_of(deployment: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(deployment)["env"]}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_document_is_valid_for_the_named_kubernetes(rendered, version):
    for path, docs in rendered.items():
        assert docs, path
        for doc in docs:
            validate(doc, version)
    secret = yaml.safe_load((K8S / "secret-example.yaml").read_text())
    validate(secret, version)


def test_the_validator_rejects_a_misspelt_field_and_a_wrong_type(base):
    broken = copy.deepcopy(base[("Deployment", "senti")])
    container(broken)["readinesProbe"] = container(broken).pop("readinessProbe")
    with pytest.raises(Exception, match="readinesProbe"):
        validate(broken, KUBERNETES_VERSIONS[0])
    wrong = copy.deepcopy(base[("Deployment", "senti")])
    wrong["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "30"
    with pytest.raises(Exception):
        validate(wrong, KUBERNETES_VERSIONS[0])


def test_the_base_has_every_piece(base):
    assert set(base) == {("Deployment", "senti"), ("Service", "senti"), ("Service", "senti-headless"),
                         ("HorizontalPodAutoscaler", "senti"), ("PodDisruptionBudget", "senti")}


def test_environment_is_real_server_settings(base, monkeypatch):
    env = env_of(base[("Deployment", "senti")])
    fields = {f"SENTI_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, f"not a setting: {sorted(set(env) - fields)}"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # parses and cross-checks them as the server would
    assert settings.max_concurrent_rpcs < settings.grpc_workers


def test_ports_probes_and_services_agree_with_the_server(base, monkeypatch):
    from senti.server.app import HEALTH_SERVICES

    deployment = base[("Deployment", "senti")]
    c = container(deployment)
    for name, value in env_of(deployment).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": settings.port, "http": settings.http_port, "metrics": settings.metrics_port}
    assert (settings.port, settings.http_port) == (50051, 8080)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["grpc"]["port"] == settings.port, probe  # native gRPC probes on the serving port
        assert c[probe]["grpc"].get("service", "") in HEALTH_SERVICES, probe
    assert c["readinessProbe"]["grpc"]["service"] == "senti.v1.SentiService"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for name in ("senti", "senti-headless"):
        service = base[("Service", name)]["spec"]
        assert service["selector"].items() <= labels.items(), name
        for port in service["ports"]:
            assert port["targetPort"] in ports and port["port"] == ports[port["targetPort"]], (name, port)
    assert base[("Service", "senti-headless")]["spec"]["clusterIP"] == "None"
    assert not base[("Service", "senti-headless")]["spec"].get("publishNotReadyAddresses", False)
    assert base[("Service", "senti")]["spec"]["type"] == "ClusterIP"
    assert {p["port"] for p in base[("Service", "senti")]["spec"]["ports"]} == {50051, 8080, 9464}


def test_drain_fits_the_termination_grace_period(base, monkeypatch):
    """preStop + shutdown delay + grace + a margin <= terminationGracePeriodSeconds, and the shutdown delay
    outlasts the readiness probe's detection of NOT_SERVING."""
    deployment = base[("Deployment", "senti")]
    c = container(deployment)
    for name, value in env_of(deployment).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    pre_stop = float(command[1])
    period = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert pre_stop + settings.shutdown_delay_s + settings.grace_s + 2 <= period
    readiness = c["readinessProbe"]
    assert settings.shutdown_delay_s >= readiness["periodSeconds"] * readiness["failureThreshold"]
    # the numbers the Deployment's comment states
    text = (K8S / "base" / "deployment.yaml").read_text()
    assert f"terminationGracePeriodSeconds = preStop {pre_stop:g} + shutdown delay {settings.shutdown_delay_s:g} " \
           f"+ grace {settings.grace_s:g}" in text


def test_resources_come_from_the_measured_memory(base, monkeypatch):
    """Requests cover the bench's peak RSS of `batched` mode (docs/perf/bench-results.json), the limit leaves
    headroom over it, and the CPU request is sessions x threads."""
    measured = json.loads((ROOT / "docs" / "perf" / "bench-results.json").read_text())
    peak_mib = measured["modes"]["batched"]["peak_rss_mb"]  # MiB (loadtest/rss.py)
    resources = container(base[("Deployment", "senti")])["resources"]

    def mib(quantity: str) -> float:
        number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", quantity).groups()
        return float(number) * (1024 if unit == "Gi" else 1)

    assert peak_mib <= mib(resources["requests"]["memory"]) < 1.5 * peak_mib
    assert mib(resources["limits"]["memory"]) >= 1.5 * peak_mib
    assert "cpu" not in resources.get("limits", {})  # throttling only adds latency
    env = env_of(base[("Deployment", "senti")])
    assert int(env["SENTI_SESSIONS"]) * int(env["SENTI_INTRA_OP_THREADS"]) == int(resources["requests"]["cpu"])


def test_autoscaler_and_disruption_budget(base, rendered):
    deployment = base[("Deployment", "senti")]
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    hpa = base[("HorizontalPodAutoscaler", "senti")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "senti"}
    assert hpa["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    pdb = base[("PodDisruptionBudget", "senti")]["spec"]
    assert pdb["maxUnavailable"] < hpa["minReplicas"]
    assert pdb["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # the custom-metric variant: CPU still, plus the queue wait that prometheus-adapter serves
    variant = by_kind(rendered["overlays/queue-wait"])[("HorizontalPodAutoscaler", "senti")]["spec"]
    assert (variant["minReplicas"], variant["behavior"]) == (hpa["minReplicas"], hpa["behavior"])
    [pods] = [m for m in variant["metrics"] if m["type"] == "Pods"]
    adapter = yaml.safe_load((DEPLOY / "prometheus" / "adapter-rules.yaml").read_text())
    assert pods["pods"]["metric"]["name"] in {rule["name"]["as"] for rule in adapter["rules"]}


def test_no_auth_overlay_drops_only_the_token_file(rendered, base):
    plain = by_kind(rendered["overlays/no-auth"])[("Deployment", "senti")]
    assert "SENTI_AUTH_TOKENS_FILE" not in env_of(plain)
    assert {v["name"] for v in plain["spec"]["template"]["spec"]["volumes"]} == {"tmp"}
    assert set(env_of(base[("Deployment", "senti")])) - set(env_of(plain)) == {"SENTI_AUTH_TOKENS_FILE"}
