"""Secrets masked wherever they print: URLs in the settings, check-config, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from streamwatch.cli import main
from streamwatch.config import Settings, WebhookSinkSettings, load_settings, masked
from streamwatch.errors import ConfigError
from streamwatch.observe import redact
from streamwatch.observe.redact import SecretUrl, mask_url

# Every value here that is a secret contains "SEKRIT", so one search finds any leak.
SLACK = "https://hooks.slack.com/services/T0SEKRIT/B0SEKRIT/xSEKRITxSEKRITxSEKRITxx"
DISCORD = "https://discord.com/api/webhooks/1234SEKRIT/abcSEKRITdef"
WEBHOOK = "https://ops:pwSEKRIT@alerts.example.com:8443/in?token=tokSEKRIT&team=ml"
RETRAIN = "https://ci.example.com/api/v1/dags/retrain/dagRuns?access_token=atSEKRIT"
APPRISE = ("slack://tokSEKRITA/tokSEKRITB/tokSEKRITC/#alerts", "mailtos://me:mpSEKRIT@gmail.com")
JIRA = "https://bot:jpSEKRIT@jira.example.com"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (WEBHOOK, "https://***@alerts.example.com:8443/in?token=***&team=***"),
        (SLACK, "https://hooks.slack.com/***"),
        (DISCORD, "https://discord.com/***"),
        ("https://x.webhook.office.com/webhookb2/SEKRIT@t/IncomingWebhook/a/b", None),
        ("https://chat.googleapis.com/v1/spaces/AAA/messages?key=SEKRIT&token=SEKRIT", None),
        ("https://api.telegram.org/bot123:SEKRIT/sendMessage", "https://api.telegram.org/***"),
        ("https://chat.example.com/hooks/SEKRITid", "https://chat.example.com/hooks/***"),
        ("https://n8n.example.com/webhook/SEKRIT", "https://n8n.example.com/webhook/***"),
        ("https://hook.example.com/x#SEKRIT", "https://hook.example.com/x#***"),
        ("http://[::1]:9000/hooks/SEKRIT", "http://[::1]:9000/hooks/***"),
        ("slack://SEKRIT/SEKRIT/SEKRIT", "slack://***"),
        ("discord://SEKRIT/SEKRIT", "discord://***"),
        ("tgram://SEKRIT/12345", "tgram://***"),
        ("mailtos://me:SEKRIT@gmail.com?to=ops@example.com", "mailtos://***@gmail.com?to=***"),
        ("json://u:SEKRIT@collector.example.com/events", "json://***@collector.example.com/events"),
        ("http://h:SEKRIT@host:notaport/x", "http://***"),
        ("SEKRIT", "***"),
        ("https://api.github.com", "https://api.github.com"),
        ("https://example.atlassian.net/rest/api/2", "https://example.atlassian.net/rest/api/2"),
    ],
)
def test_mask_url(url: str, shown: str | None) -> None:
    masked_url = mask_url(url)
    assert "SEKRIT" not in masked_url
    if shown is not None:
        assert masked_url == shown


def test_secret_parts_are_what_the_mask_hides() -> None:
    for url in (WEBHOOK, SLACK, DISCORD, RETRAIN, *APPRISE):
        text = f"the server said: no hook at {url.partition('://')[2]}"
        assert "SEKRIT" not in redact.text(text, redact.secret_parts(url)), url


def test_text_masks_urls_bare_webhook_paths_and_token_pairs() -> None:
    line = (
        f"POST {WEBHOOK} failed; HTTPConnectionPool(host='h', port=1): Max retries exceeded "
        "with url: /hooks/SEKRIT?token=SEKRIT; see /services/T0/B0/SEKRIT, api_key=SEKRIT"
    )
    assert "SEKRIT" not in redact.text(line)
    assert "alerts.example.com:8443" in redact.text(line)  # where it went stays readable


def test_a_secret_url_masks_itself_but_gives_the_real_one_to_the_sink() -> None:
    url = SecretUrl(WEBHOOK)
    assert "SEKRIT" not in str(url)
    assert "SEKRIT" not in repr(url)
    assert "SEKRIT" not in f"{url}"
    assert url.get_secret_value() == WEBHOOK
    settings = WebhookSinkSettings(kind="webhook", url=WEBHOOK)
    assert settings.url.get_secret_value() == WEBHOOK
    assert "SEKRIT" not in repr(settings)


def settings_with_secret_urls() -> Settings:
    return Settings(
        sinks={
            "ops": {"kind": "webhook", "url": WEBHOOK, "headers": {"X-Key": "hdrSEKRIT"}},
            "slack": {"kind": "webhook", "url": SLACK},
            "chat": {"kind": "apprise", "urls": list(APPRISE)},
            "retrain": {"kind": "retrain", "url": RETRAIN, "token": "rtSEKRIT"},
            "jira": {
                "kind": "jira",
                "url": JIRA,
                "project": "ML",
                "user": "bot@example.com",
                "token": "jtSEKRIT",
            },
        },
        report={"base_url": "https://r:rpSEKRIT@sw.example.com"},
    )


def test_masked_settings_show_where_but_not_the_secrets() -> None:
    printed = json.dumps(masked(settings_with_secret_urls()))
    assert "SEKRIT" not in printed
    sinks = masked(settings_with_secret_urls())["sinks"]
    assert sinks["ops"]["url"] == "https://***@alerts.example.com:8443/in?token=***&team=***"
    assert sinks["chat"]["urls"] == ["slack://***", "mailtos://***@gmail.com"]
    assert sinks["jira"]["url"] == "https://***@jira.example.com"
    assert "SEKRIT" not in repr(settings_with_secret_urls())
    assert "SEKRIT" not in str(settings_with_secret_urls())


def test_check_config_prints_no_secret_of_any_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / "s.env"
    env.write_text(
        "STREAMWATCH_SINKS__OPS__KIND=webhook\n"
        f"STREAMWATCH_SINKS__OPS__URL={WEBHOOK}\n"
        "STREAMWATCH_SINKS__SLACK__KIND=webhook\n"
        f"STREAMWATCH_SINKS__SLACK__URL={SLACK}\n"
        "STREAMWATCH_SINKS__DISCORD__KIND=webhook\n"
        f"STREAMWATCH_SINKS__DISCORD__URL={DISCORD}\n"
        "STREAMWATCH_SINKS__CHAT__KIND=apprise\n"
        f"STREAMWATCH_SINKS__CHAT__URLS={json.dumps(list(APPRISE))}\n"
        "STREAMWATCH_SINKS__RETRAIN__KIND=retrain\n"
        f"STREAMWATCH_SINKS__RETRAIN__URL={RETRAIN}\n"
        "STREAMWATCH_SINKS__RETRAIN__TOKEN=rtSEKRIT\n"
        "STREAMWATCH_SINKS__GH__KIND=github_issue\n"
        "STREAMWATCH_SINKS__GH__REPOSITORY=acme/models\n"
        "STREAMWATCH_SINKS__GH__TOKEN=ghSEKRIT\n"
        "STREAMWATCH_SINKS__GH__API_URL=https://x-access-token:gaSEKRIT@ghe.example.com/api/v3\n"
    )
    assert main(["check-config", "--env-file", str(env)]) == 0
    out = capsys.readouterr()
    assert "SEKRIT" not in out.out + out.err
    printed = json.loads(out.out)
    assert printed["sinks"]["slack"]["url"] == "https://hooks.slack.com/***"
    assert printed["sinks"]["retrain"]["url"].startswith("https://ci.example.com/api/v1/dags/")


def test_configuration_errors_print_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / "bad.env"
    env.write_text(
        f"STREAMWATCH_SINKS__OPS__URL={WEBHOOK}\n"  # no KIND: the sink cannot be told apart
        "STREAMWATCH_SINKS__HOOK__KIND=webhook\n"
        f"STREAMWATCH_SINKS__HOOK__URL={SLACK}\n"
        "STREAMWATCH_SINKS__HOOK__TIMEOUT=soon\n"
        "STREAMWATCH_SINKS__CHAT__KIND=apprise\n"
        f'STREAMWATCH_SINKS__CHAT__URLS=["{APPRISE[0]}", 7]\n'
    )
    assert main(["check-config", "--env-file", str(env)]) == 2
    out = capsys.readouterr()
    assert "STREAMWATCH_SINKS__HOOK__TIMEOUT" in out.err
    assert "SEKRIT" not in out.out + out.err
    with pytest.raises(ConfigError) as refused:
        load_settings([env])
    assert "SEKRIT" not in str(refused.value)


def test_validation_errors_hold_no_input() -> None:
    """pydantic's own text (a traceback's) shows no input: a sink's may be a secret."""
    with pytest.raises(ValidationError) as refused:
        Settings(
            sinks={
                "ops": {"url": WEBHOOK, "secret": "whsec_SEKRIT"},
                "hook": {"kind": "webhook", "url": SLACK, "timeout": "soon"},
                "chat": {"kind": "apprise", "urls": [APPRISE[0], 7]},
            }
        )
    assert "SEKRIT" not in str(refused.value)
    assert "SEKRIT" not in repr(refused.value.errors(include_input=False))
