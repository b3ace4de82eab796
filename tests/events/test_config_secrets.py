"""Secrets come from files (BREAKGLASS_*_FILE), never need a variable; a bad
file is one line naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.config import ConfigError, Env, nats_url


def secret_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "secret"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_secret_comes_from_its_file_stripped(tmp_path):
    path = secret_file(tmp_path, "t0ken\n")
    assert Env({"BREAKGLASS_API_TOKEN_FILE": str(path)}).secret("API_TOKEN") == "t0ken"
    assert Env({"BREAKGLASS_API_TOKEN": "direct"}).secret("API_TOKEN") == "direct"  # discouraged, still read
    assert Env({}).secret("API_TOKEN") is None


@pytest.mark.parametrize("mode, text, says", [
    (0o644, "t0ken", "readable by every user"),
    (0o600, "  \n", "is empty"),
])
def test_a_bad_secret_file_is_refused_in_one_line(tmp_path, mode, text, says):
    path = secret_file(tmp_path, text, mode)
    with pytest.raises(ConfigError, match=says) as caught:
        Env({"BREAKGLASS_API_TOKEN_FILE": str(path)}).secret("API_TOKEN")
    assert "BREAKGLASS_API_TOKEN_FILE" in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_file_or_both_ways_at_once_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="BREAKGLASS_API_TOKEN_FILE: cannot read"):
        Env({"BREAKGLASS_API_TOKEN_FILE": str(tmp_path / "nope")}).secret("API_TOKEN")
    path = secret_file(tmp_path, "t0ken")
    with pytest.raises(ConfigError, match="not both"):
        Env({"BREAKGLASS_API_TOKEN_FILE": str(path), "BREAKGLASS_API_TOKEN": "x"}).secret("API_TOKEN")


def test_the_nats_password_file_completes_every_server_of_the_url(tmp_path):
    path = secret_file(tmp_path, "p@ss,word\n")
    env = Env({"BREAKGLASS_NATS_URL": "nats://gateway@n1:4222,nats://gateway@n2:4222",
               "BREAKGLASS_NATS_PASSWORD_FILE": str(path)})
    assert nats_url(env, "x") == "nats://gateway:p%40ss%2Cword@n1:4222,nats://gateway:p%40ss%2Cword@n2:4222"


@pytest.mark.parametrize("url", ["nats://n1:4222", "nats://gateway:already@n1:4222"])
def test_the_nats_password_file_needs_a_user_and_no_password_in_the_url(tmp_path, url):
    path = secret_file(tmp_path, "pw")
    with pytest.raises(ConfigError, match="needs a user and no password"):
        nats_url(Env({"BREAKGLASS_NATS_URL": url, "BREAKGLASS_NATS_PASSWORD_FILE": str(path)}), "x")
