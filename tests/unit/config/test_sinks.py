"""Sink settings refuse at load what their sink would refuse when built, so that
``check-config`` refuses it too: a signing secret that is not ``whsec_`` and base64,
an HTTP endpoint that is not http(s) with a host, an apprise URL apprise cannot use.
Each error names the variable and never echoes the value."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook

from streamwatch.cli import main
from streamwatch.config import WebhookSinkSettings
from streamwatch.sinks.webhook import signer

SECRET = "whsec_" + base64.b64encode(b"a signing key of thirty-two byte").decode()
HOOK = "STREAMWATCH_SINKS__OPS__KIND=webhook\n"
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> tuple[int, str, str]:
    """``streamwatch check-config`` of an env file of ``text``: exit code, stdout, stderr."""
    env_file = tmp_path / "sinks.env"
    env_file.write_text(text)
    code = main(["check-config", "--env-file", str(env_file)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("lines", "variable", "why", "value"),
    [
        (
            "STREAMWATCH_SINKS__OPS__URL=https://example.com/hook\n"
            "STREAMWATCH_SINKS__OPS__SECRET=whsec_\n",
            "STREAMWATCH_SINKS__OPS__SECRET",
            "whsec_ followed by its key in base64",
            None,
        ),
        (
            "STREAMWATCH_SINKS__OPS__URL=https://example.com/hook\n"
            "STREAMWATCH_SINKS__OPS__SECRET=whsec_c2VjcmV0!\n",
            "STREAMWATCH_SINKS__OPS__SECRET",
            "whsec_ followed by its key in base64",
            "c2VjcmV0",
        ),
        (
            "STREAMWATCH_SINKS__OPS__URL=https://example.com/hook\n"
            "STREAMWATCH_SINKS__OPS__SECRET=whsec_c2VjcmV0c\n",
            "STREAMWATCH_SINKS__OPS__SECRET",
            "not valid base64",
            "c2VjcmV0c",
        ),
        (
            f"STREAMWATCH_SINKS__OPS__URL=https://example.com/hook\n"
            f"STREAMWATCH_SINKS__OPS__SECRET={SECRET.removeprefix('whsec_')}\n",
            "STREAMWATCH_SINKS__OPS__SECRET",
            "whsec_ followed by",
            SECRET.removeprefix("whsec_"),
        ),
        (
            "STREAMWATCH_SINKS__OPS__URL=ftp//x\n",
            "STREAMWATCH_SINKS__OPS__URL",
            "not an http:// or https:// URL with a host",
            "ftp//x",
        ),
        (
            "STREAMWATCH_SINKS__OPS__URL=https:///hooks/T0K3N\n",
            "STREAMWATCH_SINKS__OPS__URL",
            "not an http:// or https:// URL with a host",
            "T0K3N",
        ),
    ],
)
def test_check_config_refuses_a_webhook_its_sink_would(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    lines: str,
    variable: str,
    why: str,
    value: str,
) -> None:
    code, out, err = check_config(tmp_path, capsys, HOOK + lines)
    assert code == 2
    assert out == ""
    assert f"  {variable}: Value error, " in err
    assert why in err
    assert value is None or value not in err


@pytest.mark.parametrize(
    ("lines", "variable", "why"),
    [
        (
            "STREAMWATCH_SINKS__JOB__KIND=retrain\nSTREAMWATCH_SINKS__JOB__URL=dispatch.example\n",
            "STREAMWATCH_SINKS__JOB__URL",
            "http:// or https://",
        ),
        (
            "STREAMWATCH_SINKS__JOB__KIND=retrain\n"
            "STREAMWATCH_SINKS__JOB__URL=https://ci.example.com/run\n"
            "STREAMWATCH_SINKS__JOB__SECRET=whsec_\n",
            "STREAMWATCH_SINKS__JOB__SECRET",
            "whsec_",
        ),
        (
            "STREAMWATCH_SINKS__T__KIND=jira\nSTREAMWATCH_SINKS__T__URL=example.atlassian.net\n"
            "STREAMWATCH_SINKS__T__PROJECT=OPS\nSTREAMWATCH_SINKS__T__USER=u\n"
            "STREAMWATCH_SINKS__T__TOKEN=t\n",
            "STREAMWATCH_SINKS__T__URL",
            "http:// or https://",
        ),
        (
            "STREAMWATCH_SINKS__GH__KIND=github_issue\nSTREAMWATCH_SINKS__GH__REPOSITORY=o/r\n"
            "STREAMWATCH_SINKS__GH__TOKEN=t\nSTREAMWATCH_SINKS__GH__API_URL=file:///etc\n",
            "STREAMWATCH_SINKS__GH__API_URL",
            "http:// or https://",
        ),
        (
            "STREAMWATCH_SINKS__AM__KIND=alertmanager\n"
            "STREAMWATCH_SINKS__AM__URL=http://am-0:9093,am-1:9093\n",
            "STREAMWATCH_SINKS__AM__URL",
            "http:// or https://",
        ),
        (
            "STREAMWATCH_SINKS__CHAT__KIND=apprise\n"
            'STREAMWATCH_SINKS__CHAT__URLS=["hooks.slack.com/services/T0/B0/XXXX"]\n',
            "STREAMWATCH_SINKS__CHAT__URLS",
            "URL 1 does not start with its scheme",
        ),
        (
            "STREAMWATCH_SINKS__CHAT__KIND=apprise\n"
            'STREAMWATCH_SINKS__CHAT__URLS=["json://example.com", "slack://T0K3N/B0"]\n',
            "STREAMWATCH_SINKS__CHAT__URLS",
            "apprise cannot use URL 2 (slack://...)",
        ),
    ],
)
def test_check_config_refuses_other_sinks_their_sink_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: str, variable: str, why: str
) -> None:
    code, _, err = check_config(tmp_path, capsys, lines)
    assert code == 2
    assert f"  {variable}: Value error, " in err
    assert why in err
    assert "T0K3N" not in err


def test_usable_sinks_pass_and_print_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check_config(
        tmp_path,
        capsys,
        HOOK + "STREAMWATCH_SINKS__OPS__URL=https://example.com/hooks/T0K3N\n"
        f"STREAMWATCH_SINKS__OPS__SECRET={SECRET}\n"
        "STREAMWATCH_SINKS__CHAT__KIND=apprise\n"
        'STREAMWATCH_SINKS__CHAT__URLS=["slack://T0K3NA/T0K3NB/T0K3NC/#alerts"]\n'
        "STREAMWATCH_SINKS__AM__KIND=alertmanager\n"
        "STREAMWATCH_SINKS__AM__URL=http://am-0:9093,https://am-1.example.com\n",
    )
    assert (code, err) == (0, "")
    assert "T0K3N" not in out
    assert SECRET not in out


def test_the_sinks_sign_with_the_key_the_library_reads() -> None:
    settings = WebhookSinkSettings.model_validate(
        {"kind": "webhook", "url": "https://example.com", "secret": SECRET}
    )
    signing = signer(settings.secret)
    assert signing is not None
    body = '{"a": 1}'
    assert signing.sign("id-1", WHEN, body) == Webhook(SECRET).sign("id-1", WHEN, body)
    assert signer(None) is None


def test_settings_made_in_code_refuse_an_unusable_secret_too() -> None:
    with pytest.raises(ValidationError, match="whsec_ followed by") as raised:
        WebhookSinkSettings.model_validate(
            {"kind": "webhook", "url": "https://example.com", "secret": "whsec_c2VjcmV0!"}
        )
    assert "c2VjcmV0" not in str(raised.value)
