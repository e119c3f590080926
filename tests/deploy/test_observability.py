"""Prometheus rules, the Grafana dashboard and the adapter rules: valid PromQL (promtool), alerts that fire when
they should (promtool's unit tests), and every metric and label they name is one a real server exports."""
import json
import re
import subprocess
from pathlib import Path

import prometheus_client
import pytest
import yaml

from tests.conftest import running_server
from tests.deploy.conftest import DEPLOY, K8S, promtool

RULES = DEPLOY / "prometheus" / "senti-rules.yaml"
RULES_TEST = DEPLOY / "prometheus" / "senti-rules.test.yaml"
ADAPTER = DEPLOY / "prometheus" / "adapter-rules.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "senti-dashboard.json"
# Labels Prometheus itself attaches to every scraped series (prometheus.yml's relabelling adds the first two).
TARGET_LABELS = {"namespace", "pod", "job", "instance"}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",), "info": ("_info",), "summary": ("", "_count", "_sum", "_created"), "unknown": ("",)}

METRIC = re.compile(r"\b(senti_[A-Za-z0-9_]+)\b(\s*\{[^}]*\})?")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
RECORDED = re.compile(r"\bsenti:[A-Za-z0-9_:]+")


def run(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def dashboard_queries() -> list[str]:
    """Every PromQL expression of every panel."""
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", ())]


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as Prometheus would get it (Grafana's variables filled in)."""
    return expr.replace("$__rate_interval", "5m").replace("$namespace", ".*").replace("$pod", ".*")


def adapter_to_promql(expr: str) -> str:
    """An adapter metricsQuery as prometheus-adapter sends it for the pods of one namespace."""
    return expr.replace("<<.GroupBy>>", "namespace, pod").replace(
        "<<.LabelMatchers>>", 'namespace="default", pod=~"senti-.*"')


def test_rules_pass_promtool_check_and_their_unit_tests():
    assert "SUCCESS: 10 rules found" in run("check", "rules", str(RULES))
    assert "SUCCESS" in run("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)


def test_dashboard_and_adapter_queries_are_valid_promql(tmp_path):
    """promtool parses each query as the expression of a recording rule (it checks no more than that)."""
    queries = [grafana_to_promql(q) for q in dashboard_queries()]
    queries += [adapter_to_promql(rule["metricsQuery"]) for rule in yaml.safe_load(ADAPTER.read_text())["rules"]]
    rules = {"groups": [{"name": "queries", "rules": [{"record": f"senti_check:query_{i}", "expr": q}
                                                       for i, q in enumerate(queries)]}]}
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True))
    assert f"SUCCESS: {len(queries)} rules found" in run("check", "rules", str(path))


def test_alerts_cover_latency_refusals_and_readiness_with_severity_and_text():
    alerts = {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}
    assert {"SentiHighLatencyP99", "SentiHighRefusalRate", "SentiReplicaNotReady"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    tested = set(re.findall(r"alertname: (\w+)", RULES_TEST.read_text()))
    assert tested == set(alerts)  # every alert has a promtool unit test


def test_dashboard_is_well_formed():
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", "namespace", "pod"]
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for topic in ("requests/s", "status code", "latency", "phase", "queue depth", "queue wait", "batch size",
                  "cache hit rate", "refusals", "in flight"):
        assert topic in titles, topic
    assert any("transport" in q for q in dashboard_queries())


def test_prometheus_config_scrapes_the_metrics_port_with_namespace_and_pod():
    config = yaml.safe_load(PROMETHEUS.read_text())
    for name in config["rule_files"]:
        assert (PROMETHEUS.parent / name).is_file()
    [job] = config["scrape_configs"]
    relabel = job["relabel_configs"]
    assert {r["target_label"] for r in relabel if "target_label" in r} >= {"namespace", "pod"}
    kept_ports = [r["regex"] for r in relabel if r["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]]
    deployment = yaml.safe_load((K8S / "base" / "deployment.yaml").read_text())
    ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert kept_ports == ["metrics"] and "metrics" in ports


@pytest.fixture(scope="module")
def exported(tiny_bundle) -> dict[str, set[str]]:
    """{sample name: label names} of what a real server exports on /metrics after calls of every kind, over
    both transports."""
    import httpx

    from senti.server.metrics import Metrics

    with running_server(tiny_bundle, http_port=0) as (running, client):
        client.predict(["很好", "很差"])
        client.classify_zero_shot("物流很快", ["物流", "质量"])
        list(client.stream([("a", "很好"), ("b", "太糟糕了")]))
        with pytest.raises(Exception):
            client.predict("   ")
        assert httpx.post(f"http://127.0.0.1:{running.http_port}/v1/predict", json={"texts": ["很好"]},
                          timeout=30).status_code == 200
        registry = running.metrics.registry
        text = prometheus_client.generate_latest(registry).decode()
        families = list(registry.collect())
        declared = {m._name: set(m._labelnames) for m in vars(running.metrics).values()
                    if isinstance(m, prometheus_client.metrics.MetricWrapperBase)}
        assert isinstance(running.metrics, Metrics)
    out: dict[str, set[str]] = {}
    for family in families:
        labels = {k for s in family.samples for k in s.labels} | declared.get(family.name, set())
        for suffix in SUFFIXES[family.type]:
            name = family.name + suffix
            out[name] = (labels | {"le"}) if suffix == "_bucket" else (labels - {"le"})
    assert "senti_requests_total" in out and "senti_requests_total{" in text  # what Prometheus reads
    assert {"rpc", "code", "transport"} <= out["senti_requests_total"]
    return out


def referenced() -> list[tuple[str, str]]:
    """(where, expression or text) of everything that names senti metrics."""
    out = []
    for group in rule_groups():
        for rule in group["rules"]:
            where = f"rule {rule.get('alert') or rule.get('record')}"
            out.append((where, rule["expr"]))
            out.extend((where, text) for text in rule.get("annotations", {}).values())
    out += [(f"dashboard query {i}", q) for i, q in enumerate(dashboard_queries())]
    board = json.loads(DASHBOARD.read_text())
    out += [(f"dashboard variable {v['name']}", v["definition"]) for v in board["templating"]["list"]
            if "definition" in v]
    out += [("adapter rule", r["metricsQuery"]) for r in yaml.safe_load(ADAPTER.read_text())["rules"]]
    out += [("adapter seriesQuery", r["seriesQuery"]) for r in yaml.safe_load(ADAPTER.read_text())["rules"]]
    out += [("test input", s["series"]) for t in yaml.safe_load(RULES_TEST.read_text())["tests"]
            for s in t.get("input_series", ())]
    return out


def test_every_metric_and_label_named_is_exported_by_the_server(exported):
    recorded = {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}
    seen = set()
    for where, text in referenced():
        names_here = set()
        for match in METRIC.finditer(text):
            name, selector = match.group(1), match.group(2) or ""
            assert name in exported, f"{where}: {name} is not a metric the server exports"
            names_here.add(name)
            for label in MATCHER.findall(selector):
                assert label in exported[name] | TARGET_LABELS, f"{where}: {name} has no label {label!r}"
        known = set().union(*(exported[n] for n in names_here)) if names_here else set()
        for group in GROUPING.findall(text):
            for label in filter(None, (part.strip() for part in group.split(","))):
                if label.startswith("<<"):
                    continue  # an adapter template
                assert label in known | TARGET_LABELS, f"{where}: no metric here has label {label!r}"
        for name in RECORDED.findall(text):
            assert name in recorded, f"{where}: {name} is not a recording rule here"
        seen |= names_here
    # the dashboard and rules watch every part of the server the issue lists
    for name in ("senti_requests_total", "senti_request_duration_seconds_bucket", "senti_phase_duration_seconds_bucket",
                 "senti_queue_depth", "senti_batch_size_bucket", "senti_cache_hits_total", "senti_rejected_total",
                 "senti_ready", "senti_in_flight_requests"):
        assert name in seen, f"nothing watches {name}"
