"""The embedded NATS server's users: one per role of eventbus.access.

`breakglass up` generates a random password per role the first time it runs
with a data directory and keeps them in DATA_DIR/nats/credentials.json
(mode 0600, in a 0700 directory); at every start it writes the server's
authorization config (DATA_DIR/nats/auth.conf, 0600) from the current
permission matrix and hands each service only its own user's URL. The
auditor tools read the `reader` password from the same file when they run
next to `up`.

Delete credentials.json (with `up` stopped) to get new passwords.

The `admin` user (the only one that may create or change the streams) is
not kept anywhere: `up` makes a fresh password for it at every start, sets
the topology up with it, then rewrites the config without it and has the
server reload it (`drop_admin`). While the services run, no credential on
the machine may change a stream's limits, and none may purge or delete
(eventbus.access.ALWAYS_DENIED).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from urllib.parse import quote

from eventbus import access
from eventbus.topology import Topology

CREDENTIALS_FILE = "credentials.json"
CONFIG_FILE = "auth.conf"
VERSION = 1


class CredentialsError(RuntimeError):
    """The credentials file cannot be used; the message says why in one line."""


def auth_dir(data_dir: Path) -> Path:
    """Where the server's store, config and credentials live (owner only)."""
    return data_dir / "nats"


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` as the owner's only (0600), atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        users = data["users"]
        if not isinstance(users, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in users.items()
        ):
            raise ValueError("`users` must map role names to passwords")
        return dict(users)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(
            f"{path} cannot be used ({exc}); remove it (with `breakglass up` stopped) to generate new passwords"
        ) from None


#: The roles whose passwords are kept: every one but admin (set-up only).
KEPT_ROLES: tuple[str, ...] = tuple(role for role in access.ROLES if role != access.ADMIN)


def load_or_create(data_dir: Path) -> dict[str, str]:
    """Role -> password for KEPT_ROLES, generating what is missing (and the
    file itself). An admin password a former version kept is dropped."""
    path = _private_dir(auth_dir(data_dir)) / CREDENTIALS_FILE
    users = _read(path) if path.exists() else {}
    missing = [role for role in KEPT_ROLES if role not in users]
    if missing or access.ADMIN in users:
        users = {role: users.get(role) or secrets.token_urlsafe(32) for role in KEPT_ROLES}
        _write_private(path, json.dumps({"version": VERSION, "users": users}, indent=2) + "\n")
    elif path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return {role: users[role] for role in KEPT_ROLES}


def setup_password() -> str:
    """A one-start admin password: in `up`'s memory and, until `drop_admin`,
    in the server's config; never in credentials.json."""
    return secrets.token_urlsafe(32)


def write_config(data_dir: Path, passwords: dict[str, str], topology: Topology = Topology()) -> Path:
    """The server's authorization block, rewritten at every start so it
    always matches this version's matrix (one user per role in `passwords`)."""
    path = _private_dir(auth_dir(data_dir)) / CONFIG_FILE
    header = "# Written by `breakglass up` at every start from eventbus.access; edits are lost.\n"
    _write_private(path, header + access.render(passwords, topology))
    return path


def url(role: str, password: str, host: str, port: int) -> str:
    return f"nats://{quote(role, safe='')}:{quote(password, safe='')}@{host}:{port}"


def user_url(role: str, host: str, port: int) -> str:
    """A service's URL without its password (that comes from its file)."""
    return f"nats://{quote(role, safe='')}@{host}:{port}"


def write_password_files(data_dir: Path, passwords: dict[str, str]) -> dict[str, Path]:
    """One 0600 file per role (DATA_DIR/nats/<role>.password), handed to each
    service as BREAKGLASS_NATS_PASSWORD_FILE: a password in a variable would
    be readable in /proc/<pid>/environ."""
    folder = _private_dir(auth_dir(data_dir))
    files = {}
    for role, password in passwords.items():
        files[role] = folder / f"{role}.password"
        _write_private(files[role], password + "\n")
    return files


def reader_password(data_dir: Path) -> str | None:
    """The `reader` password of a data directory `up` uses, or None when
    there is none or it is not readable by this user."""
    try:
        return _read(auth_dir(data_dir) / CREDENTIALS_FILE).get(access.READER)
    except CredentialsError:
        return None
