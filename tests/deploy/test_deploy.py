"""The container recipe and the compose demo, checked without a Docker engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from streamwatch.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_the_demo_stack() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "streamwatch", "demo-producer", "prometheus", "grafana", "mailpit"} <= set(
        services
    )
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
    prometheus = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["streamwatch:9108"]


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
