"""Reading settings from the environment, once, with clear errors.

Each service builds its own settings object at start-up from these helpers
and passes it down; nothing deeper reads `os.environ`. A bad value stops the
service with one line naming the variable, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec

PREFIX = "BREAKGLASS_"
#: Set to this, BREAKGLASS_CONFIG reads no file (what `up` gives its services,
#: which get the file's values through their filtered environment instead).
NO_FILE = "none"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def config_file(environ: Mapping[str, str]) -> Path | None:
    """The settings file `breakglass init` writes: BREAKGLASS_CONFIG, else
    config.toml in the data directory; None when disabled."""
    chosen = (environ.get(PREFIX + "CONFIG") or "").strip()
    if chosen.lower() == NO_FILE:
        return None
    if chosen:
        return Path(chosen)
    return Path((environ.get(PREFIX + "DATA_DIR") or "").strip() or ".breakglass") / "config.toml"


def read_config_file(path: Path) -> dict[str, str]:
    """`BREAKGLASS_NAME = value` pairs of a TOML file, as environment strings.
    Only flat BREAKGLASS_* keys: the file is the environment written down, so
    one README table describes both. The one list, `[[BREAKGLASS_VMS]]`,
    becomes the JSON text its variable takes."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the settings file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the settings file {path} is not valid TOML: {exc}") from None
    values: dict[str, str] = {}
    for key, value in data.items():
        if not key.startswith(PREFIX) or key == PREFIX + "CONFIG":
            raise ConfigError(f"the settings file {path}: {key!r} is not a BREAKGLASS_* setting")
        if isinstance(value, bool):
            values[key] = "1" if value else "0"
        elif isinstance(value, (str, int, float)):
            values[key] = str(value)
        elif key == PREFIX + "VMS" and isinstance(value, list):
            # `[[BREAKGLASS_VMS]]` tables: the same JSON the variable holds (events.vms).
            values[key] = json.dumps(value, default=str)
        else:
            raise ConfigError(f"the settings file {path}: {key} must be a string, number or boolean")
    return values


def layered_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment over the settings file: the file is the
    lower-priority source, a variable that is set (even empty) wins."""
    env = dict(os.environ if base is None else base)
    path = config_file(env)
    if path is None or not path.is_file():
        if path is not None and (env.get(PREFIX + "CONFIG") or "").strip():
            raise ConfigError(f"{PREFIX}CONFIG names {path}, which does not exist")
        return env
    return {**read_config_file(path), **env}


class Env:
    """A read-only view of `BREAKGLASS_*` variables with typed getters.
    Without an explicit mapping: the environment over the settings file."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = dict(layered_environ() if environ is None else environ)

    def raw(self, name: str) -> str | None:
        value = self._environ.get(PREFIX + name)
        return None if value is None or value.strip() == "" else value.strip()

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        return default if value is None else value

    def required(self, name: str, why: str = "") -> str:
        value = self.raw(name)
        if value is None:
            raise ConfigError(f"{PREFIX}{name} is required{': ' + why if why else ''}")
        return value

    def int(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        number = _whole(PREFIX + name, value)
        if minimum is not None and number < minimum or maximum is not None and number > maximum:
            raise ConfigError(_out_of_range(PREFIX + name, value, number, minimum, maximum))
        return number

    def float(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.raw(name)
        if value is None:
            return default
        number = _number(PREFIX + name, value)
        if number < minimum or number != number:
            raise ConfigError(_out_of_range(PREFIX + name, value, number, minimum, None))
        return number

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        return default if value is None else _flag(PREFIX + name, value)

    def secret(self, name: str) -> str | None:
        """A secret from the file `BREAKGLASS_<name>_FILE` names (the way to
        give one: a variable's value is readable in /proc/<pid>/environ by
        anything running as the same uid), or, discouraged, from
        `BREAKGLASS_<name>` itself. The file must not be readable by others."""
        path = self.raw(name + "_FILE")
        if path is None:
            return self.raw(name)
        if self.raw(name) is not None:
            raise ConfigError(f"set {PREFIX}{name}_FILE or {PREFIX}{name}, not both")
        return read_secret(path, f"{PREFIX}{name}_FILE")

    def list(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return default
        items = _items(value)
        if not items:
            raise ConfigError(f"{PREFIX}{name} must list at least one value")
        return items

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(name, default)
        if value not in choices:
            raise ConfigError(_not_a_choice(PREFIX + name, value, choices))
        return value  # type: ignore[return-value]


def read_secret(path: str, variable: str, *, min_length: int = 1, private: bool = True) -> str:
    """The stripped content of a secret file, or a ConfigError naming
    `variable`. `private`: refuse a file every user may read (the gateway's
    edge and alert secrets were never held to that rule, only to a length:
    refusing them now would stop a working deployment)."""
    try:
        with open(path, encoding="utf-8") as f:
            if private and os.fstat(f.fileno()).st_mode & 0o004:
                raise ConfigError(f"{variable}: {path} is readable by every user; chmod o-r it (0600 or 0400)")
            value = f.read().strip()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{variable}: {path} is not UTF-8 text") from None
    if len(value) < min_length:
        short = "is empty" if min_length == 1 else f"must hold a secret of at least {min_length} characters"
        raise ConfigError(f"{variable}: {path} {short}")
    return value


def servers(url: str) -> list[str]:
    """The servers of a BREAKGLASS_NATS_URL: one URL, or several of one
    cluster separated by commas (each with the same user), tried in turn and
    on reconnect (nats-py also learns the cluster's other servers itself)."""
    return [one.strip() for one in url.split(",") if one.strip()]


def redact(url: str) -> str:
    """The URL without its password (or token): safe to log or print."""
    if "," in url:
        return ",".join(redact(one) for one in servers(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}" if user else f"***@{host}"))


def with_password(url: str, password: str) -> str:
    """Every server of `url` (nats://USER@host:port, comma-separated for a
    cluster) with `password` for its user; kept in memory, never exported."""
    out = []
    for one in servers(url):
        parts = urlsplit(one)
        user, has_user, host = parts.netloc.rpartition("@")
        if not has_user or not user or ":" in user:
            raise ConfigError(
                f"{PREFIX}NATS_PASSWORD_FILE needs a user and no password in {PREFIX}NATS_URL (nats://USER@host:port)"
            )
        out.append(urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}")))
    return ",".join(out)


def nats_url(env: Env, service: str) -> str:
    """The NATS URL with its password: from BREAKGLASS_NATS_PASSWORD_FILE
    (the way), or inside the URL itself (discouraged: visible in environ)."""
    url = env.raw("NATS_URL")
    if url is None:
        raise ConfigError(
            f"{PREFIX}NATS_URL is required to run {service} on its own "
            "(`breakglass up` starts an embedded server and sets it for you)"
        )
    for one in servers(url) or [url]:
        if not one.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ConfigError(f"{PREFIX}NATS_URL must be a nats:// or tls:// URL (or a comma-separated list of them), got {redact(one)!r}")
    password_file = env.raw("NATS_PASSWORD_FILE")
    if password_file is not None:
        url = with_password(url, read_secret(password_file, f"{PREFIX}NATS_PASSWORD_FILE"))
    return url


# Declared settings: a service's settings are one msgspec Struct (frozen,
# kw_only, rename="upper"). A field with a `Meta(description=...)` is the
# setting BREAKGLASS_<FIELD> (or the field's `name=`), its type, default and
# `Meta` bounds the whole declaration; `load` reads them all the same way, so
# no default or bound is written a second time. A field without a description
# is an internal knob, never read from the environment.

S = TypeVar("S", bound=msgspec.Struct)


def settings(cls: type[msgspec.Struct]) -> list[msgspec.structs.FieldInfo]:
    """The fields of `cls` that are settings (those with a description)."""
    return [f for f in msgspec.structs.fields(cls) if _meta(f.type, "description")]


def load(cls: type[S], env: Env | None = None, **given: Any) -> S:
    """`cls` from the environment (over the settings file). `given`: values
    of fields read their own way (a secret file, the VM list, the NATS URL
    with its password), by field name; everything else comes from its
    variable or its default. A bad value is a ConfigError naming it."""
    env = env or Env()
    names = {f.name: f.encode_name for f in msgspec.structs.fields(cls)}
    values: dict[str, Any] = {names[name]: value for name, value in given.items()}
    raws: dict[str, str] = {}
    for f in settings(cls):
        raw = None if f.name in given else env.raw(f.encode_name)
        if raw is not None:
            raws[f.encode_name] = raw
            values[f.encode_name] = _parse(PREFIX + f.encode_name, raw, _base(f.type))
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(cls, exc, values, raws)) from None


def _annotations(tp: Any) -> tuple[Any, list[msgspec.Meta]]:
    """The type under `Annotated[...]` (nested ones too) and its Metas."""
    metas: list[msgspec.Meta] = []
    while get_origin(tp) is Annotated:
        tp, *extra = get_args(tp)
        metas += [m for m in extra if isinstance(m, msgspec.Meta)]
    return tp, metas


def _meta(tp: Any, key: str) -> Any:
    return next((getattr(m, key) for m in _annotations(tp)[1] if getattr(m, key) is not None), None)


def _base(tp: Any) -> Any:
    """The type a value is read as: Annotated and `| None` taken off."""
    tp = _annotations(tp)[0]
    if get_origin(tp) in (Union, type(int | None)):
        tp = next(arg for arg in get_args(tp) if arg is not type(None))
    return _annotations(tp)[0]


def _parse(variable: str, raw: str, base: Any) -> Any:
    """A variable's text as its field's type; msgspec checks the bounds."""
    if base is bool:
        return _flag(variable, raw)
    if base is int:
        return _whole(variable, raw)
    if base is float:
        return _number(variable, raw)
    if get_origin(base) is tuple:
        return _items(raw)
    return Path(raw) if base is Path else raw


def _explain(cls: type[msgspec.Struct], exc: msgspec.ValidationError, values: dict[str, Any],
             raws: dict[str, str]) -> str:
    """One line naming the variable whose value broke a bound."""
    where = re.search(r"at `\$\.([A-Za-z0-9_]+)", str(exc))
    field = next((f for f in msgspec.structs.fields(cls) if where and f.encode_name == where[1]), None)
    if field is None or field.encode_name not in raws:
        return f"invalid settings for {cls.__qualname__}: {exc}"
    variable, raw, value = PREFIX + field.encode_name, raws[field.encode_name], values[field.encode_name]
    base = _base(field.type)
    if get_origin(base) is Literal:
        return _not_a_choice(variable, value, get_args(base))
    if get_origin(base) is tuple:
        return f"{variable} must list at least one value"
    if base in (int, float):
        return _out_of_range(variable, raw, value, _meta(field.type, "ge"), _meta(field.type, "le"))
    return f"{variable}: {str(exc).split(' - at ')[0]}, got {raw!r}"


def _whole(variable: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{variable} must be a whole number, got {raw!r}") from None


def _number(variable: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{variable} must be a number, got {raw!r}") from None


def _flag(variable: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{variable} must be 0 or 1, got {raw!r}")


def _items(raw: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _out_of_range(variable: str, raw: str, number: float, minimum: float | None, maximum: float | None) -> str:
    if isinstance(number, int) and not isinstance(number, bool):
        if minimum is not None and maximum is not None:
            return f"{variable} must be between {minimum} and {maximum}, got {number}"
        bound = f"at least {minimum}" if maximum is None else f"at most {maximum}"
        return f"{variable} must be {bound}, got {number}"
    if maximum is not None and number > maximum:
        return f"{variable} must be at most {maximum:g}, got {number:g}"
    return f"{variable} must be at least {minimum}, got {raw!r}"


def _not_a_choice(variable: str, value: Any, choices: tuple[str, ...]) -> str:
    return f"{variable} must be one of {', '.join(choices)}, got {value!r}"
