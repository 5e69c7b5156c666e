"""Production settings pass ``check --deploy`` and refuse to start without their secrets.

Each case runs ``manage.py`` in a subprocess: settings are read once per process, so a fresh
interpreter is the only faithful way to try another environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
PRODUCTION_VARIABLES = ("DEBUG", "SECRET_KEY", "API_KEY_PEPPER", "ALLOWED_HOSTS", "HTTPS_ONLY")


def manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in PRODUCTION_VARIABLES}
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        env={**base, "VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_the_deploy_check_without_warnings(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DEBUG": "false",
            "SECRET_KEY": get_random_secret_key(),
            "API_KEY_PEPPER": "x",
            "ALLOWED_HOSTS": "postman.example.gov.sg",
        },
        tmp_path=tmp_path,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = manage("check", env={"DEBUG": "false", "API_KEY_PEPPER": "x"}, tmp_path=tmp_path)

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when DEBUG is false" in result.stderr


def test_production_refuses_to_start_without_an_api_key_pepper(tmp_path):
    result = manage(
        "check",
        env={"DEBUG": "false", "SECRET_KEY": get_random_secret_key()},
        tmp_path=tmp_path,
    )

    assert result.returncode != 0
    assert "ImproperlyConfigured: API_KEY_PEPPER must be set when DEBUG is false" in result.stderr


def test_secrets_that_start_with_a_dollar_sign_are_read_as_they_are(tmp_path):
    # django-environ would read "$name" as the variable "name": such a key is one in fifty of
    # get_random_secret_key's.
    secrets = {
        "SECRET_KEY": "$" + get_random_secret_key(),
        "API_KEY_PEPPER": "$pepper",
        "CALLBACK_SECRET": "$callback",
        "DKIM_KEY_ENCRYPTION_KEYS": "$first,$second",
    }
    script = "from django.conf import settings as s; print(s.SECRET_KEY, s.API_KEY_PEPPER)"
    script += "; print(s.CALLBACK_SECRET, *s.DKIM_KEY_ENCRYPTION_KEYS)"
    env = {"DEBUG": "false", "ALLOWED_HOSTS": "postman.example.gov.sg", **secrets}

    result = manage("shell", "--verbosity", "0", "-c", script, env=env, tmp_path=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [*list(secrets.values())[:3], "$first", "$second"]
