"""The operator's API token for `breakglass up` when none is configured.

Auth fails closed, so a gateway with neither a token nor a trusted edge
header refuses everyone: `make run` would start a console nobody can use.
Instead `up` generates a token once, keeps it in DATA_DIR/api-token (0600),
and says where it is (never the token itself: it is a secret, and logs
outlive terminals).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE = "api-token"


def load_or_create(data_dir: Path) -> Path:
    path = data_dir / FILE
    if not path.exists() or not path.read_text().strip():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    os.chmod(path, 0o600)
    return path


def write_secret(data_dir: Path, name: str, value: str) -> Path:
    """A secret `up` was given in its environment, as a 0600 file under
    DATA_DIR/secrets/ for the service that needs it (never passed on as a
    variable: /proc/<pid>/environ is readable by the same uid)."""
    folder = data_dir / "secrets"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
    return path


def needed(environ: dict[str, str]) -> bool:
    token = (environ.get("BREAKGLASS_API_TOKEN", "") or environ.get("BREAKGLASS_API_TOKEN_FILE", "")).strip()
    trusted = environ.get("BREAKGLASS_TRUST_EDGE_HEADER", "").strip().lower() in {"1", "true", "yes", "on"}
    return not token and not trusted
