"""The Grafana dashboard and the Prometheus rules of the compose demo, checked against
the series streamwatch really exports, without Grafana, Prometheus or a network."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from streamwatch.observe.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "config" / "grafana" / "dashboards" / "streamwatch.json"
PROVIDER = ROOT / "config" / "grafana" / "provisioning" / "dashboards" / "streamwatch.yml"
RULES = ROOT / "config" / "prometheus" / "streamwatch-rules.yml"

# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance"})
# What Prometheus itself records per target, which rules may use besides streamwatch's.
SCRAPE_SERIES: dict[str, frozenset[str]] = {"up": frozenset()}
FUNCTIONS = frozenset(
    {
        "abs",
        "absent",
        "avg",
        "avg_over_time",
        "bottomk",
        "ceil",
        "changes",
        "clamp_max",
        "clamp_min",
        "count",
        "delta",
        "deriv",
        "floor",
        "histogram_quantile",
        "increase",
        "irate",
        "label_replace",
        "max",
        "max_over_time",
        "min",
        "min_over_time",
        "quantile",
        "rate",
        "resets",
        "round",
        "scalar",
        "sort",
        "sort_desc",
        "sum",
        "time",
        "timestamp",
        "topk",
        "vector",
    }
)
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*" + _STRING.pattern)
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")
_LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a fresh :class:`Metrics` can expose, with its label names, as
    prometheus_client writes them (``_total``, ``_created``, ``_bucket``...): one child
    of each labelled metric is made, and one sink delivered to, so that its samples exist."""
    metrics = Metrics(CollectorRegistry())
    metrics.delivering(["x0"], dict)
    wrappers = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    assert wrappers
    for wrapper in wrappers:
        names = wrapper._labelnames
        if names:
            wrapper.labels(*(f"x{i}" for i in range(len(names))))
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in series.items()}


SERIES = exported_series()


def check_expr(expr: str, known: Mapping[str, frozenset[str]]) -> list[str]:
    """What in one PromQL expression is not a known series, function or label: an empty
    list when it only uses what ``known`` defines (plus job and instance)."""
    problems: list[str] = []
    used: set[str] = set()
    selectors: list[tuple[str, set[str]]] = []

    def selector(match: re.Match[str]) -> str:
        labels = set(_MATCHER.findall(match.group(2)))
        selectors.append((match.group(1) or "", labels))
        return match.group(1) or ""

    text = _SELECTOR.sub(selector, expr)
    text = _STRING.sub(" ", text)
    if "{" in text or "}" in text:
        problems.append("unbalanced braces")
    for opening, closing in ("()", "[]"):
        if text.count(opening) != text.count(closing):
            problems.append(f"unbalanced {opening}{closing}")
    grouped: set[str] = set()
    for group in _GROUPING.findall(text):
        grouped |= {label.strip() for label in group.split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    for name, call in _IDENTIFIER.findall(text):
        if name.lower() in KEYWORDS:
            continue
        if call:
            if name not in FUNCTIONS:
                problems.append(f"unknown function {name}")
        else:
            used.add(name)
    for name, labels in selectors:
        if not name:
            problems.append("selector without a metric name")
            continue
        for label in labels - known.get(name, frozenset()) - TARGET_LABELS:
            problems.append(f"{name} has no label {label}")
    problems += [f"unknown series {name}" for name in sorted(used - set(known))]
    available = TARGET_LABELS.union(*(known.get(name, frozenset()) for name in used))
    problems += [f"no series has label {label}" for label in sorted(grouped - available)]
    if not used:
        problems.append("no series")
    return problems


def labels_available(expr: str, known: Mapping[str, frozenset[str]]) -> frozenset[str]:
    names = {m for m in re.findall(r"[A-Za-z_:][\w:]*", expr) if m in known}
    return TARGET_LABELS.union(*(known[name] for name in names))


def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included."""
    for panel in panels:
        yield panel
        yield from walk(panel.get("panels", []))


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


# -- the checker itself, so that the checks below can fail -------------------------------


def test_the_series_are_those_prometheus_client_writes() -> None:
    assert SERIES["streamwatch_messages_total"] == {"topic"}
    assert "streamwatch_messages" not in SERIES  # counters only exist with _total
    assert SERIES["streamwatch_checkpoint_seconds_bucket"] == {"le"}
    assert {"streamwatch_processing_seconds_sum", "streamwatch_processing_seconds_count"} <= set(
        SERIES
    )
    assert "streamwatch_checkpoint_age_seconds" in SERIES
    assert SERIES["streamwatch_statistic"] == {"model", "detector", "subject", "statistic"}
    assert SERIES["streamwatch_statistic_threshold"] == {
        "model",
        "detector",
        "subject",
        "statistic",
        "severity",
    }
    assert SERIES["streamwatch_outbox_pending"] == {"sink"}  # counted when scraped


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(streamwatch_messages[5m])", "unknown series streamwatch_messages"),
        ("streamwatch_consumer_lag_total", "unknown series streamwatch_consumer_lag_total"),
        ('sum(streamwatch_events_total{modl="a"})', "streamwatch_events_total has no label modl"),
        ("sum by (sink) (streamwatch_bad_events_total)", "no series has label sink"),
        ("rat(streamwatch_events_total[5m])", "unknown function rat"),
        ('{__name__="streamwatch_events_total"}', "selector without a metric name"),
        ("up == 0", "unknown series up"),
        ("rate(streamwatch_events_total{[5m])", "unbalanced braces"),
        ("sum(rate(streamwatch_events_total[5m])", "unbalanced ()"),
    ],
)
def test_the_checker_finds_what_is_not_exported(expr: str, problem: str) -> None:
    assert problem in check_expr(expr, SERIES)


def test_the_checker_accepts_what_is_exported() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, job) (rate(streamwatch_processing_seconds_bucket"
        '{instance=~"$instance"}[$__rate_interval]))) > 1e3 and on (job) '
        'sum by (job) (streamwatch_statistic{model=~"$model", detector="shadow"}) offset 5m'
    )
    assert check_expr(expr, SERIES) == []


# -- the dashboard ----------------------------------------------------------------------


def test_dashboard_targets_use_only_exported_series() -> None:
    dashboard = load_dashboard()
    checked = 0
    for panel in walk(dashboard["panels"]):
        for target in panel.get("targets", []):
            problems = check_expr(target["expr"], SERIES)
            assert not problems, (panel["title"], target["expr"], problems)
            legend = set(_LEGEND_LABEL.findall(target.get("legendFormat", "")))
            missing = legend - labels_available(target["expr"], SERIES)
            assert not missing, (panel["title"], legend)
            checked += 1
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            assert not check_expr(annotation["expr"], SERIES), annotation["name"]
            checked += 1
    assert checked >= 20


def test_dashboard_covers_every_exported_metric() -> None:
    exprs = " ".join(
        t["expr"] for p in walk(load_dashboard()["panels"]) for t in p.get("targets", [])
    )
    used = set(re.findall(r"streamwatch_\w+", exprs))
    families = {re.sub(r"_(total|created|bucket|sum|count)$", "", name) for name in SERIES}
    shown = {re.sub(r"_(total|created|bucket|sum|count)$", "", name) for name in used}
    assert families - shown == set()


def test_dashboard_panels_have_titles_unique_ids_and_the_templated_datasource() -> None:
    panels = list(walk(load_dashboard()["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert isinstance(panel.get("title"), str)
        assert panel["title"].strip(), panel["id"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in walk(load_dashboard()["panels"]):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[x, y] = panel["title"]


def test_dashboard_has_the_datasource_and_model_variables() -> None:
    dashboard = load_dashboard()
    found = variables(dashboard)
    assert found["datasource"]["type"] == "datasource"
    assert found["datasource"]["query"] == "prometheus"
    model = found["model"]
    assert model["type"] == "query"
    assert model["datasource"]["uid"] == "${datasource}"
    query = model["query"] if isinstance(model["query"], str) else model["query"]["query"]
    match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
    assert match is not None, query
    assert match.group(1) in SERIES
    assert match.group(2) == "model"
    assert "model" in SERIES[match.group(1)]


def test_dashboard_filters_every_model_series_by_the_model_variable() -> None:
    for panel in walk(load_dashboard()["panels"]):
        for target in panel.get("targets", []):
            for name, body in _SELECTOR.findall(target["expr"]):
                if "model" in SERIES.get(name, frozenset()):
                    assert 'model=~"$model"' in body, (panel["title"], target["expr"])
            bare = re.findall(r"(streamwatch_\w+)(?!\w|\s*\{)", target["expr"])
            for name in bare:
                assert "model" not in SERIES.get(name, frozenset()), (panel["title"], name)


# -- the rules --------------------------------------------------------------------------


def load_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_rules_use_only_exported_series_and_have_for_severity_and_summary() -> None:
    rules = load_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        problems = check_expr(rule["expr"], SERIES | SCRAPE_SERIES)
        assert not problems, (rule["alert"], problems)
        assert re.fullmatch(r"\d+[smhd]", str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]


def test_rules_cover_the_daemons_health() -> None:
    exprs = [rule["expr"] for rule in load_rules()]

    def watched(pattern: str) -> bool:
        return any(re.search(pattern, expr) for expr in exprs)

    assert watched(r"\bup\{[^}]*job=\"streamwatch\"[^}]*\}\s*==\s*0")
    assert watched(r"streamwatch_consumer_lag\b")
    assert watched(r"streamwatch_checkpoint_age_seconds\b")
    assert watched(r'streamwatch_notifications_total\{[^}]*result="dead"')
    assert watched(r'streamwatch_notifications_total\{[^}]*result="retried"')
    assert watched(r"streamwatch_bad_events_total\b")


# -- provisioning in docker-compose -----------------------------------------------------


def mounts(service: str) -> dict[str, str]:
    """The service's bind mounts from the repository: container path -> host path."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    found = {}
    for volume in compose["services"][service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found[target] = source
    return found


def test_compose_provisions_the_dashboard_folder() -> None:
    grafana = mounts("grafana")
    provider_folders = {
        p["options"]["path"].rstrip("/")
        for p in yaml.safe_load(PROVIDER.read_text())["providers"]
        if p["type"] == "file"
    }
    mounted = [t for t, s in grafana.items() if (ROOT / s).resolve() == DASHBOARD.parent]
    assert mounted, grafana
    assert provider_folders & {t.rstrip("/") for t in mounted}, (provider_folders, mounted)
    # The provider file itself reaches Grafana through the mounted provisioning folder.
    provisioning = {
        (ROOT / s).resolve() for t, s in grafana.items() if t == "/etc/grafana/provisioning"
    }
    assert PROVIDER.parent.parent in provisioning
    assert PROVIDER.relative_to(PROVIDER.parent.parent).parts[0] == "dashboards"
    assert DASHBOARD.is_file()


def test_compose_mounts_the_rules_prometheus_loads() -> None:
    prometheus = mounts("prometheus")
    targets = [t for t, s in prometheus.items() if (ROOT / s).resolve() == RULES]
    assert targets, prometheus
    config = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    config_dir = Path(
        next(t for t, s in prometheus.items() if s == "./config/prometheus.yml")
    ).parent
    patterns = [str(config_dir / pattern) for pattern in config.get("rule_files", [])]
    assert any(fnmatch.fnmatch(t, p) for t in targets for p in patterns), (targets, patterns)
    assert RULES.is_file()
