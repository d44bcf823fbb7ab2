"""The container recipe and the compose demo, checked without a Docker engine: the
Prometheus and Alertmanager configs by their own checkers (Debian's promtool and amtool,
which ``make test`` installs through scripts/ensure-prometheus)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from streamwatch.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "config" / "prometheus.yml"
ALERTMANAGER = ROOT / "config" / "alertmanager.yml"


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def published(service: str) -> set[int]:
    """The container ports a compose service publishes."""
    return {int(str(port).rsplit(":", 1)[-1]) for port in compose_services()[service]["ports"]}


def check(tool: str, *args: str) -> str:
    """Run promtool or amtool; fail (not skip) when it is missing."""
    path = shutil.which(tool)
    assert path is not None, f"{tool} is missing: make prometheus (scripts/ensure-prometheus)"
    done = subprocess.run(
        [path, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_compose_runs_the_demo_stack() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {
        "kafka",
        "streamwatch",
        "demo-producer",
        "prometheus",
        "alertmanager",
        "grafana",
        "mailpit",
    } <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["streamwatch"]["build"] == "."
    assert services["demo-producer"]["command"][:1] == ["produce-demo"]
    for service in ("streamwatch", "demo-producer"):
        assert services[service]["depends_on"]["kafka"]["condition"] == "service_healthy"
    # Every file the stack mounts exists; the daemon's env file is valid settings.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    settings = load_settings([ROOT / "config" / "compose.env"])
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    prometheus = yaml.safe_load(PROMETHEUS.read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["streamwatch:9108"]


def test_prometheus_loads_the_rules_and_alerts_to_alertmanager() -> None:
    out = check("promtool", "check", "config", str(PROMETHEUS.relative_to(ROOT)))
    assert "SUCCESS: 1 rule files found" in out
    config = yaml.safe_load(PROMETHEUS.read_text())
    [alertmanagers] = config["alerting"]["alertmanagers"]
    [target] = [t for c in alertmanagers["static_configs"] for t in c["targets"]]
    host, port = target.split(":")
    assert host == "alertmanager"
    assert int(port) in published(host)
    # The rule files where the config names them, relative to it, in the container too.
    mounts = dict(v.split(":")[:2] for v in compose_services()["prometheus"]["volumes"])
    config_dir = Path(mounts["./config/prometheus.yml"]).parent
    for rules in config["rule_files"]:
        source = "./" + str((PROMETHEUS.parent / rules).relative_to(ROOT))
        assert mounts[source] == str(config_dir / rules)


def test_alertmanager_mails_every_alert_to_mailpit() -> None:
    check("amtool", "check-config", str(ALERTMANAGER.relative_to(ROOT)))
    config = yaml.safe_load(ALERTMANAGER.read_text())
    host, port = config["global"]["smtp_smarthost"].split(":")
    assert host == "mailpit"
    assert int(port) in published(host)
    assert config["global"]["smtp_require_tls"] is False  # Mailpit speaks plain SMTP
    [receiver] = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    assert "routes" not in config["route"]
    assert receiver["email_configs"]
    mounts = dict(v.split(":")[:2] for v in compose_services()["alertmanager"]["volumes"])
    assert mounts["./config/alertmanager.yml"] == "/etc/alertmanager/alertmanager.yml"


def test_streamwatch_alerts_by_email_and_to_alertmanager() -> None:
    settings = load_settings([ROOT / "config" / "compose.env"])
    mail = settings.sinks["mail"]
    assert mail.kind == "apprise"
    [url] = [urlsplit(u.get_secret_value()) for u in mail.urls]
    # Plain SMTP to Mailpit, no login: mailto:// without a user.
    assert (url.scheme, url.hostname, url.username) == ("mailto", "mailpit", None)
    assert url.port in published("mailpit")
    alertmanager = settings.sinks["alertmanager"]
    assert alertmanager.kind == "alertmanager"
    [base] = [urlsplit(str(u)) for u in alertmanager.url]
    assert (base.scheme, base.hostname) == ("http", "alertmanager")
    assert base.port in published("alertmanager")


def test_the_image_runs_as_a_user_with_an_exec_form_entrypoint() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", dockerfile, re.MULTILINE)
    assert entrypoint is not None
    assert json.loads(entrypoint.group(1)) == ["streamwatch"]  # exec form: signals reach it
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users
    assert users[-1] not in {"root", "0"}
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.MULTILINE)
    assert cmd is not None
    assert json.loads(cmd.group(1))[0] == "run"
