"""Secrets out of what streamwatch prints: URLs with their credentials masked, and text
(log lines, failure reasons) with the URLs and ``token=...`` pairs in it masked.

A URL is a secret in part. Its userinfo (``user:pass@``), its query values
(``?token=``, ``?key=``, ``?sig=``) and its fragment always are; so is the path of an
incoming webhook, which is the credential itself: a known webhook host
(hooks.slack.com, discord.com, ...) or a path segment such as ``hooks`` or
``webhooks`` and everything after it. An apprise URL of any scheme but the host-based
ones (``slack://tokenA/tokenB/tokenC``, ``tgram://bottoken/chat``) is secret but for
its scheme.

>>> mask_url("https://bot:s3cret@example.com:8443/api/hook?token=abc&v=2")
'https://***@example.com:8443/api/hook?token=***&v=***'
>>> mask_url("https://hooks.slack.com/services/T000/B000/XXXX")
'https://hooks.slack.com/***'
>>> mask_url("https://chat.example.com/hooks/abc123")
'https://chat.example.com/hooks/***'
>>> mask_url("slack://tokenA/tokenB/tokenC/#alerts")
'slack://***'
>>> text("POST to http://127.0.0.1:9/hook?token=abc failed; retry with api_key=xyz")
'POST to http://127.0.0.1:9/hook?token=*** failed; retry with api_key=***'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, SecretStr

MASK = "***"

# Schemes whose URLs name a host that is not itself a secret (apprise's json://, form://,
# xml:// and mailto:// are host-based like http).
_HOSTED = {"http", "https", "json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos"}
# Incoming-webhook services: the whole path is the credential.
_WEBHOOK_HOSTS = (
    "hooks.slack.com",
    "discord.com",
    "discordapp.com",
    "webhook.office.com",
    "outlook.office.com",
    "outlook.office365.com",
    "chat.googleapis.com",
    "api.telegram.org",
    "hooks.zapier.com",
    "maker.ifttt.com",
    "logic.azure.com",
    "webhook.site",
)
# A path segment after which the rest is a webhook's id and token (Mattermost, Rocket.Chat,
# Discord, n8n, Teams' webhookb2, ...).
_HOOK_SEGMENT = re.compile(r"^(hooks?|webhooks?|webhookb2)$", re.IGNORECASE)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{0,31}://[^\s'\"<>`]+")
# The same secrets without the URL around them ("Max retries exceeded with url: /hooks/...").
_BARE_PATHS = (
    (re.compile(r"(?i)(/(?:hooks?|webhooks?|webhookb2)/)[^\s'\"<>?#]+"), rf"\1{MASK}"),
    (re.compile(r"/services/T\w+/B\w+/\w+"), f"/services/{MASK}"),  # Slack's
    (re.compile(r"/bot\d+:[\w-]+"), f"/bot{MASK}"),  # Telegram's
)
_PAIR = re.compile(
    r"(?i)\b(token|access_token|api_key|apikey|key|secret|password|passwd|pass|pwd|"
    r"sig|signature|auth)=([^&\s'\"<>]+)"
)


def mask_url(url: str) -> str:
    """``url`` with its credentials, query values and (for webhooks) path masked."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return MASK if url else url
    if scheme.lower() not in _HOSTED:
        return f"{scheme}://{MASK}"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # an unbalanced IPv6 bracket, a port that is not a number
        return f"{scheme}://{MASK}"
    netloc = ("[" + host + "]" if ":" in host else host) + (f":{port}" if port else "")
    if "@" in parts.netloc:
        netloc = f"{MASK}@{netloc}"
    path = _mask_path(host.lower(), parts.path)
    query = "&".join(
        f"{name}={MASK}" if eq else name
        for name, eq, _ in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, path, query, fragment))


def _mask_path(host: str, path: str) -> str:
    if path.strip("/") and any(host == h or host.endswith("." + h) for h in _WEBHOOK_HOSTS):
        return "/" + MASK
    segments = path.split("/")
    for i, segment in enumerate(segments[:-1]):
        if _HOOK_SEGMENT.match(segment) and any(segments[i + 1 :]):
            return "/".join([*segments[: i + 1], MASK])
    return path


def text(value: str, secrets: Iterable[str] = ()) -> str:
    """``value`` with every URL in it masked, every ``token=...`` pair's value, and each
    of ``secrets`` (literal values known to be secret) wherever it occurs."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        value = value.replace(secret, MASK)  # the longest first: one may contain another
    value = _URL.sub(lambda m: mask_url(m.group(0)), value)
    for pattern, replacement in _BARE_PATHS:
        value = pattern.sub(replacement, value)
    return _PAIR.sub(lambda m: f"{m.group(1)}={MASK}", value)


def secret_parts(url: str) -> list[str]:
    """The literal secrets of ``url`` (what :func:`mask_url` hides), to be scrubbed from
    text that may echo them without the URL around them (an error page, say)."""
    parts: list[str] = []
    scheme, sep, rest = url.partition("://")
    if not sep:
        return [url] if url else []
    if scheme.lower() not in _HOSTED:
        return [rest]
    try:
        split = urlsplit(url)
    except ValueError:
        return [rest]
    userinfo, at, _ = split.netloc.rpartition("@")
    if at:
        parts += [userinfo, *userinfo.split(":", 1)]
    parts += [value for _, _, value in (p.partition("=") for p in split.query.split("&"))]
    masked_path = _mask_path((split.hostname or "").lower(), split.path)
    if masked_path != split.path:
        hidden = split.path[len(masked_path) - len(MASK) :]
        # Its segments too, where they look like ids or tokens rather than words.
        segments = [s for s in hidden.split("/") if len(s) >= 20 or any(c.isdigit() for c in s)]
        parts += [hidden, *segments]
    if split.fragment:
        parts.append(split.fragment)
    return [p for p in parts if p]


class SecretUrl(SecretStr):
    """A URL that holds secrets: ``get_secret_value()`` is the URL to call; ``str``,
    ``repr`` and the settings' JSON (``check-config``) show it masked.

    >>> SecretUrl("https://user:pw@example.com/hook?token=t")
    SecretUrl('https://***@example.com/hook?token=***')
    """

    def _display(self) -> str:
        return mask_url(self.get_secret_value())


def _masked(value: Any) -> str:
    return str(value) if isinstance(value, SecretUrl) else mask_url(str(value))


def _revealed(value: Any) -> Any:
    """A plain ``SecretStr`` given for a URL (as before URLs had a type of their own)."""
    if isinstance(value, SecretStr) and not isinstance(value, SecretUrl):
        return value.get_secret_value()
    return value


# Settings' field types. pydantic's own JSON for a secret is ``**********``: a masked URL
# still says where notifications go.
MaskedSecretUrl = Annotated[
    SecretUrl, BeforeValidator(_revealed), PlainSerializer(_masked, when_used="json")
]


class _UrlText(str):
    """A URL used as text (``rstrip``, f-strings) whose ``repr`` is masked."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(mask_url(str(self)))


# A URL that is not secret as such (an API's base URL) but may be given with credentials:
# masked in the JSON and in the settings' repr.
MaskedUrl = Annotated[str, AfterValidator(_UrlText), PlainSerializer(_masked, when_used="json")]
