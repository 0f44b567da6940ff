"""Secrets from files (the ``_FILE`` convention) and their registration for redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from wayport.config.loader import parse_config
from wayport.config.secrets import SecretEnv
from wayport.core.errors import ConfigError
from wayport.core.redaction import SECRETS, redact

STRONG = "Zt8-qLw2Vn5xRb9Kc4Hs7Jd1Mf6Pg3Ty"


def test_api_key_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(STRONG + "\n")
    config = parse_config(None, env={"WAYPORT_API_KEY_FILE": str(key_file)})
    assert config.server.api_key is not None
    assert config.server.api_key.get_secret_value() == STRONG  # trailing newline dropped
    assert STRONG in SECRETS


def test_substitution_reads_files_and_registers_them(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("filed-upstream-token-0a9b8c7d")
    text = (
        "deployments: {up: {backend: openai, base_url: 'https://x.example/v1', model: m,"
        " api_key: '${UP_TOKEN}', headers: {X-Region: '${REGION}'}}}\n"
        "models: {m: {deployments: [up]}}\n"
    )
    config = parse_config(text, env={"UP_TOKEN_FILE": str(token), "REGION": "eu-west-one"})
    assert config.deployments["up"].secrets() == ("filed-upstream-token-0a9b8c7d",)
    assert redact("401 for filed-upstream-token-0a9b8c7d") == "401 for [REDACTED]"
    assert "eu-west-one" not in SECRETS  # not a credential: never masked


def test_secret_named_variables_are_registered() -> None:
    env = SecretEnv({"MY_SERVICE_PASSWORD": "hunter2-but-longer", "PORT": "8080"})
    assert env["MY_SERVICE_PASSWORD"] and env["PORT"]
    assert env.secrets == {"hunter2-but-longer"}


def test_both_value_and_file_is_ambiguous(tmp_path: Path) -> None:
    f = tmp_path / "k"
    f.write_text(STRONG)
    with pytest.raises(ConfigError, match="both WAYPORT_API_KEY and WAYPORT_API_KEY_FILE"):
        parse_config(None, env={"WAYPORT_API_KEY": STRONG, "WAYPORT_API_KEY_FILE": str(f)})


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        parse_config("server: {api_key: '${K}'}\n", env={"K_FILE": str(tmp_path / "missing")})
    assert "K" in SecretEnv({"K_FILE": "x"}) and "K" not in SecretEnv({})


def test_encryption_keys_from_the_environment() -> None:
    from wayport.store.sealing import generate_key

    key = generate_key("k1")
    config = parse_config(None, env={"WAYPORT_ENCRYPTION_KEYS": key})
    assert config.store.encryption_keys is not None
    assert config.store.encryption_keys.get_secret_value() == key
    assert redact(f"oops {key.partition(':')[2]}") == "oops [REDACTED]"
