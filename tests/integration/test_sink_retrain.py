"""The retrain sink against a real HTTP server on 127.0.0.1 playing GitHub, Airflow
and a generic endpoint: the requests each would accept, and one run per notification."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Literal

import pytest

from streamwatch.alerting.policy import Alert, Notification
from streamwatch.config import RetrainSinkSettings
from streamwatch.errors import ConfigError
from streamwatch.sinks.base import Delivered, DeliveryFailed
from streamwatch.sinks.retrain import RetrainSink, run_id
from streamwatch.windows import WindowBounds

# The receiver and the independent signature check are the webhook tests' own.
from tests.integration.receivers import Received, Reply, receiving, verify

pytestmark = pytest.mark.integration

Preset = Literal["github_workflow", "github_repository", "airflow", "generic"]
WINDOW = WindowBounds(3, 1_795_305_600.0, 1_795_309_200.0)
NOTIFICATION_ID = "0123456789abcdef" * 2
SECRET = "whsec_" + base64.b64encode(b"a shared secret of 32 bytes.....").decode()


def alert(subject: str, status: Literal["firing", "resolved"], severity: str) -> Alert:
    labels = {
        "alertname": "PerformanceDrop",
        "model": "fraud",
        "detector": "performance",
        "subject": subject,
        "statistic": "f1",
        "severity": severity,
    }
    return Alert(
        status=status,
        labels=labels,
        summary=f"{severity}: performance on {subject} of fraud",
        description=f"{subject} fell from 0.91 to 0.62",
        starts_at=WINDOW.start,
        ends_at=WINDOW.end if status == "resolved" else None,
        fingerprint=hashlib.sha256(subject.encode()).hexdigest()[:16],
        value=0.62,
        threshold=0.8,
        window=WINDOW,
    )


def notification(*alerts: Alert, model: str = "fraud") -> Notification:
    return Notification(NOTIFICATION_ID, model, WINDOW, alerts)


# Two firing alerts (the worst is critical) and one resolved: only the firing count.
MIXED = notification(
    alert("f1", "firing", "warning"),
    alert("recall", "firing", "critical"),
    alert("precision", "resolved", "warning"),
)
FIRING_FINGERPRINTS = ",".join(a.fingerprint for a in MIXED.alerts[:2])
RUN_ID = "streamwatch-fraud-0123456789abcdef"


def sink(url: str, preset: Preset, **settings: object) -> RetrainSink:
    config = RetrainSinkSettings.model_validate(
        {"kind": "retrain", "preset": preset, "url": url, "timeout": 5.0, **settings}
    )
    return RetrainSink("retrain", config)


def answer(status: int) -> Reply:
    return status, {}


def test_github_workflow_dispatch_sends_string_inputs_a_workflow_declares() -> None:
    with receiving(lambda got: answer(204)) as github:
        url = github.url.replace("/hooks/streamwatch", "/repos/o/r/actions/workflows/t.yml")
        retrain = sink(url + "/dispatches", "github_workflow", token="ghp_s3cret", ref="release")
        assert retrain.send(MIXED) == Delivered("retrain")
        retrain.close()
    [got] = github.requests
    assert got.path == "/repos/o/r/actions/workflows/t.yml/dispatches"
    assert got.headers["authorization"] == "Bearer ghp_s3cret"
    assert got.headers["accept"] == "application/vnd.github+json"
    assert got.headers["x-github-api-version"] == "2022-11-28"
    assert got.headers["content-type"] == "application/json"
    body = json.loads(got.body)
    assert body.keys() == {"ref", "inputs"}
    assert body["ref"] == "release"
    inputs = body["inputs"]
    assert len(inputs) <= 10  # GitHub refuses more
    assert all(isinstance(v, str) for v in inputs.values())
    assert inputs == {
        "run_id": RUN_ID,
        "model": "fraud",
        "window_start": "2026-11-22T00:00:00Z",
        "window_end": "2026-11-22T01:00:00Z",
        "severity": "critical",
        "summary": inputs["summary"],
        "fingerprints": FIRING_FINGERPRINTS,
    }
    assert inputs["summary"].startswith("[streamwatch] CRITICAL: model fraud, 3 alerts")


def test_github_repository_dispatch_carries_the_firing_alerts() -> None:
    with receiving(lambda got: answer(204)) as github:
        retrain = sink(github.url, "github_repository", token="ghp_s3cret")
        assert retrain.send(MIXED) == Delivered("retrain")
        retrain.close()
    [got] = github.requests
    assert got.headers["authorization"] == "Bearer ghp_s3cret"
    assert got.headers["x-github-api-version"] == "2022-11-28"
    body = json.loads(got.body)
    assert body["event_type"] == "streamwatch-retrain"
    payload = body["client_payload"]
    assert len(payload) <= 10  # GitHub's limit of top-level properties
    assert payload["run_id"] == RUN_ID
    assert payload["severity"] == "critical"
    assert payload["fingerprints"] == FIRING_FINGERPRINTS
    assert [a["labels"]["subject"] for a in payload["alerts"]] == ["f1", "recall"]
    assert {a["status"] for a in payload["alerts"]} == {"firing"}


def test_airflow_starts_one_dag_run_and_takes_409_as_already_started() -> None:
    runs: set[str] = set()

    def airflow(got: Received) -> Reply:
        run = json.loads(got.body)["dag_run_id"]
        if run in runs:
            return answer(409)
        runs.add(run)
        return answer(200)

    with receiving(airflow) as server:
        retrain = sink(server.url, "airflow", token="admin:pa:ss")
        # The second send is a retry after a lost response: the same run, not a new one.
        assert retrain.send(MIXED) == Delivered("retrain")
        assert retrain.send(MIXED) == Delivered("retrain")
        retrain.close()
    assert runs == {RUN_ID}
    first, second = server.requests
    assert first.body == second.body
    assert first.headers["authorization"] == "Basic " + base64.b64encode(b"admin:pa:ss").decode()
    body = json.loads(first.body)
    assert body.keys() == {"dag_run_id", "conf"}
    assert body["conf"]["model"] == "fraud"
    assert body["conf"]["run_id"] == RUN_ID
    assert [a["fingerprint"] for a in body["conf"]["alerts"]] == FIRING_FINGERPRINTS.split(",")


def test_airflow_takes_a_token_without_a_colon_as_bearer_and_retries_a_5xx() -> None:
    with receiving(lambda got: (503, {"Retry-After": "30"})) as server:
        retrain = sink(server.url, "airflow", token="jwt.t0k3n")
        result = retrain.send(MIXED)
        retrain.close()
    assert server.requests[0].headers["authorization"] == "Bearer jwt.t0k3n"
    assert isinstance(result, DeliveryFailed)
    assert result.retryable
    assert result.retry_after == 30.0
    assert "t0k3n" not in result.reason


@pytest.mark.parametrize("preset", ["github_workflow", "github_repository", "airflow", "generic"])
def test_a_resolved_notification_starts_nothing(preset: Preset) -> None:
    resolved = notification(alert("f1", "resolved", "warning"))
    with receiving(lambda got: answer(204)) as server:
        retrain = sink(server.url, preset, token="t")
        assert retrain.send(resolved) == Delivered("retrain")
        retrain.close()
    assert server.requests == []


def test_the_run_id_is_deterministic_and_safe_for_airflow() -> None:
    assert run_id(MIXED) == run_id(notification(alert("f1", "firing", "critical"))) == RUN_ID
    odd = notification(alert("f1", "firing", "critical"), model="fraud/v2 (eu)")
    assert run_id(odd) == "streamwatch-fraud-v2-eu-0123456789abcdef"


def test_generic_fills_the_template_with_escaped_values_and_signs_it() -> None:
    template = '{"text": "retrain $model: $summary", "run": "$run_id", "id": "$notification_id"}'
    quoted = notification(alert("f1", "firing", "critical"), model='fraud "eu"\nv2')

    def respond(got: Received) -> Reply:
        return answer(204 if verify(SECRET, got.headers, got.body) else 401)

    with receiving(respond) as server:
        retrain = sink(server.url, "generic", body=template, secret=SECRET, token="bearer-t")
        assert retrain.send(quoted) == Delivered("retrain")
        retrain.close()
    [got] = server.requests
    assert got.headers["webhook-id"] == NOTIFICATION_ID
    assert got.headers["authorization"] == "Bearer bearer-t"
    body = json.loads(got.body)
    assert body["text"].startswith('retrain fraud "eu"\nv2: [streamwatch] CRITICAL: model fraud')
    assert body["run"] == "streamwatch-fraud-eu-v2-0123456789abcdef"
    assert body["id"] == NOTIFICATION_ID


def test_generic_default_body_names_every_field() -> None:
    with receiving(lambda got: answer(200)) as server:
        retrain = sink(server.url, "generic")
        assert retrain.send(MIXED) == Delivered("retrain")
        retrain.close()
    [got] = server.requests
    assert "webhook-signature" not in got.headers
    assert "authorization" not in got.headers
    body = json.loads(got.body)
    assert body["run_id"] == RUN_ID
    assert body["notification_id"] == NOTIFICATION_ID
    assert body["severity"] == "critical"
    assert body["window_end"] == "2026-11-22T01:00:00Z"
    assert body.keys() >= {"model", "summary", "window_start", "fingerprints"}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ('{"model": $model}', "not a JSON template"),  # placeholder outside a string
        ('{"model": "$model"', "not a JSON template"),
        ('{"model": "$modle"}', r"names \$modle"),
        ('{"cost": "$5"}', "not a JSON template"),
    ],
)
def test_a_generic_body_that_is_not_json_is_a_config_error(body: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"sink retrain: .*{why}"):
        sink("http://127.0.0.1:9/", "generic", body=body)


def test_github_presets_need_a_token() -> None:
    with pytest.raises(ConfigError, match="sink retrain: the github_workflow preset needs a token"):
        sink("http://127.0.0.1:9/", "github_workflow")
