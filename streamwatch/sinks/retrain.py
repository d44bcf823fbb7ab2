"""``kind=retrain``: a firing notification starts a retraining run elsewhere.

Presets speak the API of the usual schedulers: a GitHub Actions ``workflow_dispatch`` or
``repository_dispatch``, an Airflow DAG run (REST API v1), or any JSON endpoint from a
template. The run id ``streamwatch-<model>-<notification id[:16]>`` is the same on every
retry, so a retry after a lost response cannot start a second run where the scheduler
keys runs by it (Airflow answers 409); GitHub gets it as an input to deduplicate on.
The cooldown between runs of one model is the router's job, not this sink's.
"""

from __future__ import annotations

import base64
import re
import string
from typing import Any

import msgspec

from streamwatch.alerting.policy import Notification, isoformat
from streamwatch.config import RetrainSinkSettings
from streamwatch.errors import ConfigError
from streamwatch.sinks.base import Delivered, DeliveryResult
from streamwatch.sinks.http import Http
from streamwatch.sinks.render import title
from streamwatch.sinks.webhook import post_signed_json, signer

# Airflow's default allowed_run_id_pattern; and a bound on its 250-character column.
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.~:+-]+")
_MODEL_CHARS = 64
_SUMMARY_CHARS = 1000
_GITHUB = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
_FIELDS = (
    "run_id",
    "model",
    "window_start",
    "window_end",
    "severity",
    "summary",
    "fingerprints",
    "notification_id",
)
_DEFAULT_BODY = "{" + ", ".join(f'"{field}": "${field}"' for field in _FIELDS) + "}"


def run_id(notification: Notification) -> str:
    """``streamwatch-<model>-<id[:16]>``, the model reduced to characters Airflow accepts."""
    model = _RUN_ID_UNSAFE.sub("-", notification.model).strip("-")[:_MODEL_CHARS] or "model"
    return f"streamwatch-{model}-{notification.id[:16]}"


def trigger(notification: Notification) -> dict[str, str]:
    """Why a run starts, as strings: GitHub's workflow inputs (7 of its limit of 10)."""
    firing = [a for a in notification.alerts if a.status == "firing"]
    worst = max(firing, key=lambda a: a.severity.rank)
    return {
        "run_id": run_id(notification),
        "model": notification.model,
        "window_start": isoformat(notification.window.start),
        "window_end": isoformat(notification.window.end),
        "severity": worst.severity.value,
        "summary": title(notification)[:_SUMMARY_CHARS],
        "fingerprints": ",".join(a.fingerprint for a in firing),
    }


def _json_escaped(value: str) -> str:
    """``value`` as the inside of a JSON string: the template supplies the quotes."""
    return msgspec.json.encode(value).decode()[1:-1]


def _template(sink: str, body: str | None) -> string.Template:
    """The generic body template, checked to give JSON before the first alert needs it."""
    template = string.Template(body or _DEFAULT_BODY)
    # A quote in the dummy value catches a placeholder left outside a JSON string.
    dummy = {field: _json_escaped(f'{field} "x"') for field in _FIELDS}
    try:
        msgspec.json.decode(template.substitute(dummy))
    except KeyError as exc:
        known = ", ".join(f"${f}" for f in _FIELDS)
        raise ConfigError(f"sink {sink}: body names ${exc.args[0]}; known: {known}") from None
    except ValueError as exc:  # a bad placeholder, or not JSON (msgspec.DecodeError)
        raise ConfigError(f"sink {sink}: body is not a JSON template: {exc}") from None
    return template


def _authorization(sink: str, settings: RetrainSinkSettings) -> dict[str, str]:
    token = settings.token.get_secret_value() if settings.token else None
    if settings.preset.startswith("github"):
        if token is None:
            raise ConfigError(f"sink {sink}: the {settings.preset} preset needs a token")
        return {"Authorization": f"Bearer {token}", **_GITHUB}
    if token is None:
        return {}
    if ":" in token:  # user:password
        return {"Authorization": "Basic " + base64.b64encode(token.encode()).decode()}
    return {"Authorization": f"Bearer {token}"}


class RetrainSink:
    """Starts one retraining run per firing notification; resolved ones need no run."""

    def __init__(self, name: str, settings: RetrainSinkSettings) -> None:
        self.name = name
        self.settings = settings
        generic = settings.preset == "generic"
        self.template = _template(name, settings.body) if generic else None
        self.signing = signer(settings.secret) if generic else None
        self.url = settings.url.get_secret_value()
        self.http = Http(name, settings.timeout, _authorization(name, settings))

    def send(self, notification: Notification) -> DeliveryResult:
        if notification.status != "firing":
            return Delivered(self.name)
        fields = trigger(notification)
        alerts = [a.to_dict() for a in notification.alerts if a.status == "firing"]
        match self.settings.preset:
            case "github_workflow":
                return self._post({"ref": self.settings.ref, "inputs": fields})  # answers 204
            case "github_repository":
                payload = {**fields, "alerts": alerts}
                return self._post(
                    {"event_type": self.settings.event_type, "client_payload": payload}
                )
            case "airflow":
                conf = {**fields, "alerts": alerts}
                # 409: a run with this id exists, i.e. an earlier attempt got through.
                return self._post({"dag_run_id": fields["run_id"], "conf": conf}, ok=(409,))
            case "generic":
                assert self.template is not None
                values = {k: _json_escaped(v) for k, v in fields.items()}
                values["notification_id"] = _json_escaped(notification.id)
                body = self.template.substitute(values).encode()
                return post_signed_json(self.http, self.url, body, notification.id, self.signing)

    def _post(self, payload: dict[str, Any], ok: tuple[int, ...] = ()) -> DeliveryResult:
        headers = {"Content-Type": "application/json"}
        body = msgspec.json.encode(payload)
        return self.http.deliver("POST", self.url, data=body, headers=headers, ok=ok)

    def close(self) -> None:
        self.http.close()
