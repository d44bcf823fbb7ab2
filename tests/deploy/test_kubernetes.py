"""The Kubernetes sidecar manifest, checked without a cluster or kubectl.

The pod's environment is built from the manifest as the kubelet would build it (envFrom
of the ConfigMap and Secret in the file), then loaded as streamwatch loads it, and as an
env file. Every variable name is also walked down the Settings model, a sink's fields
by the sink's kind, so that no name in the manifest is one streamwatch would not read.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from streamwatch.alerting.outbox import outbox_path
from streamwatch.config import ENV_PREFIX, NESTED, Settings, load_settings
from streamwatch.config.variables import unknown_names
from streamwatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "kubernetes" / "model-server-with-streamwatch.yaml"

Doc = dict[str, Any]


def documents() -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc is not None]


def only(kind: str) -> Doc:
    found = [doc for doc in documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def named(kind: str, name: str) -> Doc:
    found = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert found, f"no {kind} named {name!r} in {MANIFEST.name}"
    return found[0]


def pod_spec() -> Doc:
    spec: Doc = only("Deployment")["spec"]["template"]["spec"]
    return spec


def streamwatch_container() -> Doc:
    matches: list[Doc] = [c for c in pod_spec()["containers"] if c["name"] == "streamwatch"]
    assert len(matches) == 1
    return matches[0]


def secret_values(secret: Doc) -> dict[str, str]:
    assert "data" not in secret, "placeholders belong in stringData, readable and obviously fake"
    values: dict[str, str] = secret["stringData"]
    return values


def container_env(container: Doc) -> dict[str, str]:
    """The variables the kubelet gives the container: envFrom in order, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named("ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(secret_values(named("Secret", source["secretRef"]["name"])))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secret_values(named("Secret", ref["name"]))[ref["key"]]
        else:
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = named("ConfigMap", ref["name"])["data"][ref["key"]]
    return env


# What an operator puts in place of the Secret's placeholders (which fail on purpose).
FILLED = {
    "STREAMWATCH_KAFKA__SASL_PASSWORD": "kafka-password",
    "STREAMWATCH_SINKS__HOOK__SECRET": "whsec_dGVzdC1zaWduaW5nLWtleS0wMTIzNDU2Nzg5",
    "STREAMWATCH_SINKS__ONCALL__URLS": '["slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"]',
}


def filled_env() -> dict[str, str]:
    """The container's variables with the Secret filled in."""
    env = container_env(streamwatch_container())
    assert FILLED.keys() == secret_values(only("Secret")).keys()
    return env | FILLED


def clear_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)


def load_pod_settings(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> Settings:
    """Settings as `streamwatch run` (no --env-file) builds them inside the pod."""
    clear_env(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def _unwrap(annotation: Any) -> Any:
    """Annotated[X, ...] -> X and X | None -> X."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def unknown_part(name: str, env: Mapping[str, str]) -> str | None:
    """None when ``name`` is a field path of Settings, else the path up to where it is not.

    A dict field takes any key (a sink's name); a union of models (the sinks) is the
    member whose ``kind`` the variable ``<path>__KIND`` in ``env`` names.
    """
    if not name.startswith(ENV_PREFIX):
        return name
    parts = name.removeprefix(ENV_PREFIX).lower().split(NESTED)
    annotation: Any = Settings
    for index, part in enumerate(parts):
        annotation = _unwrap(annotation)
        path = ENV_PREFIX + NESTED.join(parts[: index + 1]).upper()
        if get_origin(annotation) in (Union, types.UnionType):
            kind_name = ENV_PREFIX + NESTED.join([*parts[:index], "kind"]).upper()
            kind = env.get(kind_name, "").lower()
            chosen = [
                member
                for member in map(_unwrap, get_args(annotation))
                if _is_model(member)
                and "kind" in member.model_fields
                and get_args(member.model_fields["kind"].annotation) == (kind,)
            ]
            if len(chosen) != 1:
                return kind_name
            annotation = chosen[0]
        if _is_model(annotation):
            field = annotation.model_fields.get(part)
            if field is None:
                return path
            annotation = field.annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]  # this part is a key
        else:
            return path  # a leaf (str, number, list...) with more parts after it
    return None


# -- the tests ----------------------------------------------------------------------------


def test_the_manifest_holds_the_workload_and_its_config() -> None:
    kinds = sorted(doc["kind"] for doc in documents())
    assert kinds == ["ConfigMap", "Deployment", "Secret", "Service"]
    for doc in documents():
        assert doc["apiVersion"] == ("apps/v1" if doc["kind"] == "Deployment" else "v1")
        assert doc["metadata"]["name"]
    deployment = only("Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert only("Service")["spec"]["selector"] == selector


def test_the_pod_runs_the_model_server_and_streamwatch_beside_it() -> None:
    containers = pod_spec()["containers"]
    assert len(containers) == 2
    assert [c["name"] for c in containers].count("streamwatch") == 1
    sidecar = streamwatch_container()
    # The image's ENTRYPOINT is `streamwatch`; `run` is the daemon, settings from env.
    assert "command" not in sidecar
    assert sidecar["args"][-1] == "run"
    assert "--env-file" not in sidecar["args"]


def test_config_is_strings_under_the_prefix_and_secrets_are_placeholders() -> None:
    config = only("ConfigMap")["data"]
    secrets = secret_values(only("Secret"))
    assert config.keys().isdisjoint(secrets.keys())
    for name, value in {**config, **secrets}.items():
        assert name.startswith(ENV_PREFIX), name
        assert isinstance(value, str), f"{name}: Kubernetes takes strings only"
    for value in secrets.values():
        assert "REPLACE" in value
    # Secrets stay out of the ConfigMap.
    for name in config:
        assert not name.endswith(("PASSWORD", "SECRET", "TOKEN", "URLS")), name


def test_env_from_names_the_config_map_and_secret_in_the_file() -> None:
    refs = streamwatch_container()["envFrom"]
    config_maps = [r["configMapRef"]["name"] for r in refs if "configMapRef" in r]
    secrets = [r["secretRef"]["name"] for r in refs if "secretRef" in r]
    assert config_maps == [only("ConfigMap")["metadata"]["name"]]
    assert secrets == [only("Secret")["metadata"]["name"]]
    for ref in refs:
        assert not next(iter(ref.values())).get("optional", False)


def test_every_variable_is_a_settings_field() -> None:
    env = container_env(streamwatch_container())
    assert env
    assert {name: unknown_part(name, env) for name in env} == dict.fromkeys(env)
    assert unknown_names(Settings, env) == []  # what streamwatch itself refuses at start


def test_the_variables_load_as_an_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In an env file an unknown name is an error (extra fields are forbidden), whatever
    # the environment would do with it.
    clear_env(monkeypatch)
    env = filled_env()
    assert not [value for value in env.values() if "'" in value]
    env_file = tmp_path / "pod.env"
    env_file.write_text("".join(f"{name}='{value}'\n" for name, value in env.items()))
    assert set(load_settings([env_file]).sinks) == {"console", "hook", "oncall"}
    misspelt = tmp_path / "misspelt.env"
    misspelt.write_text(env_file.read_text() + "STREAMWATCH_WINDOWS__SIZE='5m'\n")
    with pytest.raises(ConfigError, match="STREAMWATCH_WINDOWS__SIZE"):
        load_settings([misspelt])


def test_the_placeholders_stop_streamwatch_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as error:
        load_pod_settings(monkeypatch, container_env(streamwatch_container()))
    assert "STREAMWATCH_SINKS__HOOK__SECRET" in str(error.value)
    assert "STREAMWATCH_SINKS__ONCALL__URLS" in str(error.value)


@pytest.mark.parametrize(
    ("name", "unknown"),
    [
        ("STREAMWATCH_SERVR__HOST", "STREAMWATCH_SERVR"),
        ("STREAMWATCH_WINDOW__SIZEE", "STREAMWATCH_WINDOW__SIZEE"),
        ("STREAMWATCH_WINDOW__SIZE__X", "STREAMWATCH_WINDOW__SIZE__X"),
        ("STREAMWATCH_SINKS__HOOK__SECRETT", "STREAMWATCH_SINKS__HOOK__SECRETT"),
        ("STREAMWATCH_SINKS__HOOK__URLS", "STREAMWATCH_SINKS__HOOK__URLS"),
        ("STREAMWATCH_SINKS__NAMELESS__URL", "STREAMWATCH_SINKS__NAMELESS__KIND"),
        ("KAFKA__TOPICS", "KAFKA__TOPICS"),
    ],
)
def test_the_field_walk_catches_what_the_environment_ignores(name: str, unknown: str) -> None:
    env = {"STREAMWATCH_SINKS__HOOK__KIND": "webhook"}
    assert unknown_part(name, env) == unknown
    assert unknown_part("STREAMWATCH_SINKS__HOOK__HEADERS__X_TOKEN", env) is None
    assert unknown_part("STREAMWATCH_ALERTS__HYSTERESIS__FIRE_AFTER", env) is None


def test_the_pod_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_pod_settings(monkeypatch, filled_env())
    assert settings.server.host == "0.0.0.0"
    assert settings.kafka.sasl_password is not None
    hook = settings.sinks["hook"]
    assert hook.kind == "webhook"
    assert hook.secret is not None
    oncall = settings.sinks["oncall"]
    assert oncall.kind == "apprise"
    assert len(oncall.urls) == 1
    assert set(settings.sinks) == {"console", "hook", "oncall"}


def test_the_server_listens_on_all_interfaces_at_the_probed_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = only("ConfigMap")["data"]
    assert config["STREAMWATCH_SERVER__HOST"] == "0.0.0.0"
    port = int(config["STREAMWATCH_SERVER__PORT"])
    assert load_pod_settings(monkeypatch, filled_env()).server.port == port
    sidecar = streamwatch_container()
    ports = {p.get("name", str(p["containerPort"])): p["containerPort"] for p in sidecar["ports"]}
    assert port in ports.values()

    def probed(probe: str) -> tuple[str, int]:
        get = sidecar[probe]["httpGet"]
        target = get["port"]
        return get["path"], ports[target] if isinstance(target, str) else target

    assert probed("livenessProbe") == ("/livez", port)
    assert probed("startupProbe") == ("/livez", port)
    annotations = only("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_no_probe_holds_the_pod_unready_while_kafka_is_away() -> None:
    # A pod is ready only when every container is, and a container is not ready until its
    # startup probe has passed: neither may wait for /readyz (partitions assigned).
    sidecar = streamwatch_container()
    assert "readinessProbe" not in sidecar
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/livez"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_a_rollout_keeps_a_pod_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = only("Deployment")["spec"]
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] >= 1
    assert spec["replicas"] > 1
    # Pods that overlap share the group: each partition's state must follow it.
    settings = load_pod_settings(monkeypatch, filled_env())
    assert settings.state.changelog_topic is not None
    assert settings.kafka.client == "kafka-python"  # the client that scales out
    # A Deployment's pod names are new with each pod: no static membership.
    assert settings.kafka.group_instance_id is None


def test_state_is_a_local_copy_of_what_the_changelog_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_pod_settings(monkeypatch, filled_env())
    state_dir = str(PurePosixPath(settings.state.path).parent)
    mounts = {m["mountPath"]: m for m in streamwatch_container()["volumeMounts"]}
    assert state_dir in mounts
    assert not mounts[state_dir].get("readOnly", False)
    # The outbox (undelivered notifications) sits beside the state file: same volume.
    assert str(PurePosixPath(outbox_path(settings)).parent) == state_dir
    volume = {v["name"]: v for v in pod_spec()["volumes"]}[mounts[state_dir]["name"]]
    # No claim for pods to wait on during a rollout: the changelog carries the state.
    assert volume.keys() == {"name", "emptyDir"}


def test_the_pod_outlasts_the_shutdown_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    grace = load_pod_settings(monkeypatch, filled_env()).server.grace_period
    assert pod_spec()["terminationGracePeriodSeconds"] > grace


def test_streamwatch_is_bounded_and_unprivileged() -> None:
    sidecar = streamwatch_container()
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= sidecar["resources"][bound].keys()
    context = sidecar["securityContext"]
    pod_context = pod_spec().get("securityContext", {})
    assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True
    assert context.get("runAsUser", pod_context.get("runAsUser", 0)) != 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    # With the root filesystem read-only, every writable path is a mounted volume.
    assert {"/tmp"} <= {m["mountPath"] for m in sidecar["volumeMounts"]}
    assert isinstance(pod_context.get("fsGroup"), int)
