"""Every sink's settings, told apart by ``kind``, and the registry of kinds.

:data:`SINK_SETTINGS` maps each kind to its settings class: the built-in kinds, then
those that installed packages add through the ``streamwatch.sinks`` entry-point group.
Such an entry point loads an object with ``kind`` (a string), ``settings`` (a
:class:`SinkSettingsBase` subclass with ``kind: Literal["<kind>"]``) and ``build``
(which makes the sink: ``streamwatch.sinks`` reads it); only the first two are read here.

What a sink would refuse when it is built is refused here, when the settings are loaded
(so ``check-config`` refuses it too): an HTTP endpoint that is not http(s) with a host,
a signing secret that is not ``whsec_`` and base64 (:func:`webhook_signer`, which the
sinks sign with), an apprise URL that apprise itself cannot use.
"""

from __future__ import annotations

import functools
import json
import logging
import operator
import re
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from streamwatch import plugins
from streamwatch.config.base import Duration, Section
from streamwatch.errors import ConfigError
from streamwatch.observe.redact import MaskedSecretUrl, MaskedUrl, SecretUrl
from streamwatch.severity import Severity

ENTRY_POINT_GROUP = "streamwatch.sinks"

# The messages below say what is wrong with a value, never what it is: URLs and secrets
# hold credentials (and the settings hide their inputs from validation errors).
_WEB = ("http", "https")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_WHSEC = "whsec_"
# apprise's own idea of a scheme; what lacks one it would log, in clear, as a file path.
_APPRISE_SCHEME = re.compile(r"^\s*([a-z0-9]{1,32})://", re.IGNORECASE)

_Url = TypeVar("_Url", str, SecretUrl)


def _web(url: _Url) -> _Url:
    """An http(s) URL with a host: what the HTTP sinks can call."""
    value = url.get_secret_value() if isinstance(url, SecretUrl) else url
    try:
        parts = urlsplit(value)
        usable = parts.scheme.lower() in _WEB and bool(parts.hostname) and parts.port != 0
    except ValueError:  # an unbalanced IPv6 bracket, a port that is not a number
        usable = False
    if not usable:
        raise ValueError("not an http:// or https:// URL with a host, e.g. https://example.com")
    return url


WebSecretUrl = Annotated[MaskedSecretUrl, AfterValidator(_web)]
WebUrl = Annotated[MaskedUrl, AfterValidator(_web)]


def webhook_signer(secret: str) -> Webhook:
    """The Standard Webhooks signer of ``secret``: ``whsec_`` and the key in base64, as
    the standardwebhooks library reads it. ValueError if it is not one."""
    key = secret.removeprefix(_WHSEC)
    if key == secret or not _BASE64.fullmatch(key):
        raise ValueError("a signing secret is whsec_ followed by its key in base64")
    try:
        return Webhook(secret)
    except (EmptyWebhookSecretError, ValueError):  # binascii.Error is a ValueError
        raise ValueError("the key after whsec_ is not valid base64 (or is empty)") from None


def _signing(secret: SecretStr) -> SecretStr:
    webhook_signer(secret.get_secret_value())
    return secret


SigningSecret = Annotated[SecretStr, AfterValidator(_signing)]


def _apprise_urls(urls: tuple[SecretUrl, ...]) -> tuple[SecretUrl, ...]:
    """URLs apprise takes, tried with apprise itself as the sink adds them. apprise loads
    its every plugin (a third of a second) on the first URL: only with an apprise sink."""
    import apprise

    # apprise logs a URL it cannot use, tokens in clear: not while it is only tried.
    quiet = logging.getLogger("apprise")
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        with warnings.catch_warnings():
            # Its email plugin imports imghdr, deprecated since Python 3.11 (as in the sink).
            warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
            for number, url in enumerate(urls, start=1):
                scheme = _APPRISE_SCHEME.match(url.get_secret_value())
                if scheme is None:
                    raise ValueError(
                        f"URL {number} does not start with its scheme (slack://, mailto://, ...)"
                    )
                asset = apprise.AppriseAsset(secure_logging=True)
                if not apprise.Apprise(asset=asset).add(url.get_secret_value()):
                    raise ValueError(
                        f"apprise cannot use URL {number} ({scheme.group(1).lower()}://...)"
                    )
    finally:
        quiet.disabled = was_disabled
    return urls


def _alerting(severity: Severity) -> Severity:
    if severity is Severity.OK:
        raise ValueError("a sink's minimum severity is warning or critical")
    return severity


class SinkSettingsBase(Section):
    """What every sink takes. A kind's settings subclass it, adding
    ``kind: Literal["<kind>"]``, by which the sinks' settings are told apart."""

    min_severity: Annotated[Severity, AfterValidator(_alerting)] = Field(
        Severity.WARNING, description="alerts of this severity or worse are sent"
    )
    matchers: dict[str, str] = Field(
        default_factory=dict, description="label -> value; only alerts with all these are sent"
    )
    timeout: Duration = Field(10.0, gt=0, description="one delivery attempt at most")
    max_attempts: int | None = Field(
        None,
        ge=1,
        description="attempts before a notification is dead; default: no limit but OUTBOX__MAX_AGE",
    )
    retry_base: Duration = Field(1.0, gt=0, description="first backoff; doubles per attempt")
    retry_cap: Duration = Field(
        50.0, gt=0, description="longest backoff: delivery resumes within this of a recovery"
    )


class LogSinkSettings(SinkSettingsBase):
    """One JSON line per alert on standard output."""

    kind: Literal["log"]


class FileSinkSettings(SinkSettingsBase):
    """Each notification as one JSON line appended to a file, each notification id once."""

    kind: Literal["file"]
    path: Path = Field(description="file the notifications are appended to")


class AppriseSinkSettings(SinkSettingsBase):
    """Chat and email through apprise: mailto://, slack://, discord://, tgram://, ..."""

    kind: Literal["apprise"]
    urls: Annotated[tuple[MaskedSecretUrl, ...], AfterValidator(_apprise_urls)] = Field(
        min_length=1, description="apprise URLs (secrets)"
    )


class WebhookSinkSettings(SinkSettingsBase):
    """Alertmanager's webhook payload, signed the Standard Webhooks way."""

    kind: Literal["webhook"]
    url: WebSecretUrl = Field(description="endpoint each notification is POSTed to")
    secret: SigningSecret | None = Field(None, description="whsec_... signing secret")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="header -> value, sent with every request (secrets)"
    )


class RetrainSinkSettings(SinkSettingsBase):
    """A retraining run triggered by a firing alert, at most once per model per cooldown."""

    kind: Literal["retrain"]
    min_severity: Annotated[Severity, AfterValidator(_alerting)] = Field(
        Severity.CRITICAL, description="alerts of this severity or worse start a run"
    )
    preset: Literal["github_workflow", "github_repository", "airflow", "generic"] = Field(
        "generic",
        description="the API called: GitHub workflow_dispatch or repository_dispatch, "
        "an Airflow DAG run (REST API v1), or any JSON endpoint",
    )
    url: WebSecretUrl = Field(description="the dispatch, DAG-run or generic endpoint")
    token: SecretStr | None = Field(None, description="bearer token (GitHub) or basic user:pass")
    ref: str = Field("main", description="git ref of a workflow_dispatch")
    event_type: str = Field("streamwatch-retrain", description="repository_dispatch type")
    body: str | None = Field(None, description="generic preset: JSON template with $fields")
    secret: SigningSecret | None = Field(None, description="whsec_... signing secret (generic)")
    cooldown: Duration = Field(86400.0, ge=0, description="one trigger per model per cooldown")


class JiraSinkSettings(SinkSettingsBase):
    """One Jira issue per alert (REST API v2); repeats and the resolution comment on it."""

    kind: Literal["jira"]
    url: WebUrl = Field(description="base URL, e.g. https://example.atlassian.net")
    project: str = Field(description="key of the project issues are created in")
    issue_type: str = Field("Bug", description="issue type of the issues created")
    user: str = Field(description="account email (Cloud) or user name")
    token: SecretStr = Field(description="API token (Cloud) or password, sent as basic auth")
    resolve_transition: str | None = Field(None, description="transition name on resolve")


class GithubIssueSinkSettings(SinkSettingsBase):
    """One GitHub issue per alert; repeats and the resolution comment on it."""

    kind: Literal["github_issue"]
    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="owner/name")
    token: SecretStr = Field(description="token with write access to the issues (to label them)")
    api_url: WebUrl = Field(
        "https://api.github.com",
        description="REST API root; GitHub Enterprise: https://HOST/api/v3",
    )
    close_on_resolve: bool = Field(True, description="close the issue when its alert resolves")


def _url_list(value: Any) -> Any:
    """One URL, or several separated by commas (or a JSON list): an Alertmanager cluster."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        return json.loads(value)
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class AlertmanagerSinkSettings(SinkSettingsBase):
    """Each alert POSTed to Alertmanager's /api/v2/alerts: firing ones again every
    resend interval (so that Alertmanager does not resolve them itself), resolved ones
    with their end."""

    kind: Literal["alertmanager"]
    url: Annotated[tuple[WebUrl, ...], BeforeValidator(_url_list)] = Field(
        min_length=1,
        description="base URL, e.g. http://alertmanager:9093; for a cluster, every member's "
        "URL separated by commas (each is posted to, as Prometheus does)",
    )
    user: str | None = Field(None, description="basic auth user (with PASSWORD)")
    password: SecretStr | None = Field(None, description="basic auth password")
    token: SecretStr | None = Field(None, description="bearer token (instead of basic auth)")
    resend_interval: Duration = Field(
        60.0,
        gt=0,
        description="firing alerts are posted again this often, so that Alertmanager "
        "(resolve_timeout) does not resolve them while a window is open",
    )

    @model_validator(mode="after")
    def _one_way_in(self) -> AlertmanagerSinkSettings:
        if self.token is not None and (self.user is not None or self.password is not None):
            raise ValueError("a bearer token (TOKEN) or basic auth (USER, PASSWORD), not both")
        if (self.user is None) != (self.password is None):
            raise ValueError("basic auth takes both a USER and a PASSWORD")
        return self


class KafkaSinkSettings(SinkSettingsBase):
    """Each alert as JSON on a topic, keyed by fingerprint, with the source's security."""

    kind: Literal["kafka"]
    topic: str = Field(description="topic the alert records are produced to")
    bootstrap_servers: str | None = Field(None, description="default: the source's brokers")


class ReviewSinkSettings(SinkSettingsBase):
    """Review requests (not alerts): on a topic keyed by event id, or appended to a file
    (for replays). Every review sink gets every request."""

    kind: Literal["review"]
    topic: str | None = Field(None, description="topic the requests are produced to")
    path: Path | None = Field(None, description="or: file the requests are appended to")
    bootstrap_servers: str | None = Field(None, description="default: the source's brokers")

    @model_validator(mode="after")
    def _one_place(self) -> ReviewSinkSettings:
        if (self.topic is None) == (self.path is None):
            raise ValueError("a review sink has a TOPIC or a PATH, one of them")
        return self


# The built-in kinds, as mypy knows them. At run time the root's sinks also take those of
# installed entry points: see sink_settings_union().
SinkSettings = Annotated[
    LogSinkSettings
    | FileSinkSettings
    | AppriseSinkSettings
    | WebhookSinkSettings
    | RetrainSinkSettings
    | JiraSinkSettings
    | GithubIssueSinkSettings
    | KafkaSinkSettings
    | AlertmanagerSinkSettings
    | ReviewSinkSettings,
    Field(discriminator="kind"),
]


def kind_of(settings: type[SinkSettingsBase]) -> str | None:
    """The kind a settings class is chosen by, its ``kind: Literal["<kind>"]``, if any."""
    field = settings.model_fields.get("kind")
    if field is None or get_origin(field.annotation) is not Literal:
        return None
    values = get_args(field.annotation)
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


# kind -> settings class. The built-in kinds come first, in the order an unknown kind's
# error lists them; add_entry_point_kinds() adds the installed ones.
SINK_SETTINGS: dict[str, type[SinkSettingsBase]] = {
    cast(str, kind_of(settings)): settings for settings in get_args(get_args(SinkSettings)[0])
}
_BUILT_IN = frozenset(SINK_SETTINGS)


def sink_settings_union() -> Any:
    """The discriminated union of every kind in :data:`SINK_SETTINGS`, which the root's
    ``sinks`` are validated against; :data:`SinkSettings` as long as no package adds one.

    Any, because it is made at run time from the kinds installed: mypy knows the
    built-in ones, :data:`SinkSettings`.
    """
    members = functools.reduce(operator.or_, SINK_SETTINGS.values())
    return cast(Any, Annotated)[members, Field(discriminator="kind")]


def add_entry_point_kinds() -> None:
    """Add the kind of each ``streamwatch.sinks`` entry point to :data:`SINK_SETTINGS`;
    raise :class:`ConfigError` naming an entry point that cannot be loaded, is not a
    sink kind, or takes a kind that is taken."""
    for where, loaded in plugins.load(entry_points(group=ENTRY_POINT_GROUP)):
        # Read duck-typed: the object is the package's own (streamwatch.sinks' SinkKind or not).
        kind, settings = getattr(loaded, "kind", None), getattr(loaded, "settings", None)
        if not (isinstance(settings, type) and issubclass(settings, SinkSettingsBase)):
            raise ConfigError(
                f"{where}: its settings are not a subclass of streamwatch.config.SinkSettingsBase"
            )
        if not isinstance(kind, str) or kind_of(settings) != kind:
            raise ConfigError(
                f"{where}: its kind is {kind!r} but its settings' kind is "
                f"{kind_of(settings)!r}; they must be the same string"
            )
        taken = SINK_SETTINGS.get(kind)
        if taken is settings:
            continue  # the same package found twice on the path
        if taken is not None:
            owner = "the built-in one" if kind in _BUILT_IN else "another entry point's"
            raise ConfigError(
                f"{where}: sink kind {kind!r} clashes with {owner} "
                f"({taken.__module__}.{taken.__qualname__})"
            )
        SINK_SETTINGS[kind] = settings
