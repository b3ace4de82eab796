"""`breakglass up`: the whole system on one machine.

Everything that can be known to fail is checked before anything starts, so
a busy port or a missing binary is one line and exit 1, with nothing left
behind to clean up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from eventbus import access, logfmt
from eventbus.bus import redact, role_of, servers
from events.config import ConfigError, Env, layered_environ
from eventbus.topology import Topology, TopologyError, ensure

from . import apitoken, natsauth, natsd
from .settings import SERVICES, UpSettings, service_env
from eventbus.service import die_with_parent

from .logfiles import LogFiles
from .supervisor import Child, Printer, Supervisor, tail

NATS_HOST = "127.0.0.1"  # natsd: the embedded server is for one machine


class StartError(RuntimeError):
    """Something outside breakglass stops it from starting; one line says what."""


def port_in_use(host: str, port: int) -> bool:
    """natsd.port_is_free, but for IPv6 hosts and names too; a host that does
    not resolve is a settings error, not a busy port."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror:
        raise ConfigError(f"BREAKGLASS_HOST {host!r} does not resolve to an address") from None
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def preflight(s: UpSettings) -> None:
    if s.nats_url is None:
        if s.port == s.nats_port:
            raise ConfigError(f"BREAKGLASS_PORT and BREAKGLASS_NATS_PORT are both {s.port}; they must differ")
        try:
            natsd.find_binary()
        except natsd.NatsdError as exc:
            raise StartError(str(exc)) from None
    if port_in_use(s.host, s.port):
        raise StartError(
            f"port {s.port} on {s.host} is already in use: stop the other program or set BREAKGLASS_PORT"
        )
    if s.nats_url is None and port_in_use(NATS_HOST, s.nats_port):
        raise StartError(
            f"NATS port {s.nats_port} on {NATS_HOST} is already in use: "
            "stop the other server, set BREAKGLASS_NATS_PORT, or point BREAKGLASS_NATS_URL at it"
        )
    taken = {s.port, s.nats_port} if s.nats_url is None else {s.port}
    for name, port in s.metrics_ports.items():
        if port == 0:
            continue
        if port in taken:
            raise ConfigError(f"BREAKGLASS_{name} is {port}, a port breakglass already uses; choose another (0 = off)")
        taken.add(port)
        if port_in_use(s.metrics_host, port):
            raise StartError(
                f"metrics port {port} on {s.metrics_host} is already in use: set BREAKGLASS_{name} (0 = off)"
            )


def nats_env() -> dict[str, str]:
    """nats-server needs nothing of ours: it gets no BREAKGLASS_* at all."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def nats_child(s: UpSettings, printer: Printer, config_file: Path | None = None) -> Child:
    store = natsauth.auth_dir(s.data_dir)
    log_file = s.data_dir / "nats.log"
    # Its own session: a terminal Ctrl-C reaches only `up`, which stops nats
    # last, after the services wrote their final events. Dies with `up`.
    process_options = {"start_new_session": True, "preexec_fn": die_with_parent(), "env": nats_env()}

    def spawn() -> subprocess.Popen[bytes]:
        return natsd.start(
            store, host=NATS_HOST, port=s.nats_port, log_file=log_file, config_file=config_file, **process_options,
        ).process

    return Child("nats", spawn, printer, own_group=True, last=True)


def service_child(name: str, module: str, env: dict[str, str], printer: Printer) -> Child:
    preexec = die_with_parent()

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C reaches `up` only; `up` stops them in order
            preexec_fn=preexec,
        )

    return Child(name, spawn, printer)


def drop_admin(server: Child, admin_url: str, timeout: float = 10.0) -> None:
    """Have the server reload its config (rewritten without the admin user)
    and wait until the admin password no longer opens a connection."""
    import nats

    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)  # nats-server: reload the configuration

    async def quiet(exc: Exception) -> None:
        pass

    async def refused() -> bool:
        try:
            nc = await nats.connect(servers(admin_url), allow_reconnect=False, max_reconnect_attempts=0,
                                    connect_timeout=1, error_cb=quiet,
                                    inbox_prefix=access.inbox_prefix(access.ADMIN))
        except Exception:
            return True
        await nc.close()
        return False

    deadline = time.monotonic() + timeout
    while not asyncio.run(refused()):
        if time.monotonic() > deadline:
            raise StartError("nats-server did not drop the set-up (admin) user after reloading its configuration")
        time.sleep(0.1)


def ensure_topology(url: str, topology: Topology | None = None, timeout: float = 15.0) -> None:
    """Create the streams once here, so services starting in parallel do not
    race to create them and the gateway is ready as soon as it connects.
    On the embedded server this is the admin user: the only one that may."""
    import nats

    seen: list[Exception] = []

    async def remember(exc: Exception) -> None:
        seen.append(exc)  # reported below in one line, instead of nats-py's log

    async def run() -> None:
        nc = await nats.connect(
            servers(url), name="breakglass-up", connect_timeout=2, allow_reconnect=False,
            max_reconnect_attempts=1, reconnect_time_wait=0.5, error_cb=remember,
            inbox_prefix=access.inbox_prefix(role_of(url) or access.ADMIN),
        )
        try:
            await ensure(nc.jetstream(), topology or Topology())
        finally:
            await nc.close()

    try:
        asyncio.run(asyncio.wait_for(run(), timeout))
    except Exception as exc:
        why = str(exc if isinstance(exc, TopologyError) or not seen else seen[-1]) or type(exc).__name__
        raise StartError(f"cannot set up JetStream on {redact(url)}: {why}") from None


def watch_ready(
    s: UpSettings, printer: Printer, started: float, stop: threading.Event, hint: str = "",
) -> threading.Thread:
    """Print the URL once, when the gateway says it can serve."""

    def poll() -> None:
        url = f"{s.base_url}/ready"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an http_proxy
        hinted = False
        last = "no answer"
        while not stop.is_set():
            try:
                with opener.open(url, timeout=1) as answer:
                    if answer.status == 200:
                        elapsed = time.monotonic() - started
                        printer.say(f"breakglass is up: {s.base_url}  (ready in {elapsed:.1f} s){hint}")
                        return
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(getattr(exc, "reason", exc))
            if not hinted and time.monotonic() - started > 30:
                hinted = True
                printer.say(f"breakglass: the gateway is not ready after 30 s ({last}); still waiting")
            stop.wait(0.1)

    thread = threading.Thread(target=poll, name="ready", daemon=True)
    thread.start()
    return thread


def up(environ: Mapping[str, str] | None = None) -> int:
    """Settings and preflight first: a wrong setting is exit 2 and a busy
    port or missing binary exit 1, with nothing started."""
    started = time.monotonic()
    printer = Printer()
    try:
        environ = dict(layered_environ() if environ is None else environ)
        s = UpSettings.from_env(Env(environ))
        topology = Topology.from_env(Env(environ))  # what the services will expect, or they find it drifted
        preflight(s)
        show = logfmt.choose(Env(environ).choice("LOG_FORMAT", "auto", logfmt.FORMATS), sys.stdout)
    except ConfigError as exc:
        printer.error(f"breakglass: {exc}")
        return 2
    except StartError as exc:
        printer.error(f"breakglass: {exc}")
        return 1

    # Services always log JSON to `up`; `up` keeps it per service in files
    # and shows it the way BREAKGLASS_LOG_FORMAT asks (console on a terminal).
    printer.json_lines = show == "json"
    printer.files = LogFiles(s.data_dir)
    return _run(s, topology, environ, printer, started)


def _run(s: UpSettings, topology: Topology, environ: dict[str, str], printer: Printer, started: float) -> int:
    """NATS and its streams, then the services, under the supervisor:
    whatever ends the run (a signal, a child's exit, a start-up error, a
    bug), everything started is stopped before `up` returns."""
    sup = Supervisor(printer, s.grace_seconds)
    sup.install_signal_handlers()
    tail_stop = threading.Event()
    tailer: threading.Thread | None = None
    try:
        if s.nats_url is None:
            passwords, admin, config = _embedded_nats_config(s, topology)
            tailer = _tail_nats_log(s.data_dir / "nats.log", printer, tail_stop)
            urls, files = _start_embedded_nats(s, topology, sup, printer, passwords, admin, config)
        else:
            # An external server: its own users and permissions, one URL for all
            # (and BREAKGLASS_NATS_PASSWORD_FILE, when given, passed on as it is).
            urls, files = dict.fromkeys(access.ROLES, environ["BREAKGLASS_NATS_URL"]), {}
            ensure_topology(s.nats_url, topology)
        hint = _prepare_service_environ(environ, s.data_dir, s.metrics_ports)
        _start_services(sup, environ, urls, files, printer)
        watch_ready(s, printer, started, sup.stopping, hint)
        return sup.run()
    except (StartError, natsd.NatsdError, natsauth.CredentialsError, OSError) as exc:
        printer.error(f"breakglass: {exc}")
        return 1
    finally:
        sup.shutdown()  # again after run(): harmless; after a bug: nothing is left behind
        tail_stop.set()
        if tailer is not None:
            tailer.join(2.0)


def _embedded_nats_config(s: UpSettings, topology: Topology) -> tuple[dict[str, str], str, Path]:
    """The embedded server: one NATS user per role (eventbus.access), so
    each service gets a URL with its own user and nothing else; the admin
    user, which alone may create the streams, is this start's only
    (natsauth.setup_password)."""
    s.data_dir.mkdir(parents=True, exist_ok=True)
    passwords = natsauth.load_or_create(s.data_dir)
    admin = natsauth.setup_password()
    config = natsauth.write_config(s.data_dir, {**passwords, access.ADMIN: admin}, topology)
    return passwords, admin, config


def _tail_nats_log(log_file: Path, printer: Printer, stop: threading.Event) -> threading.Thread:
    """One run's log: bounded, and the tail starts at its top."""
    log_file.write_bytes(b"")
    return tail(log_file, "nats", printer, stop)


def _start_embedded_nats(
    s: UpSettings, topology: Topology, sup: Supervisor, printer: Printer,
    passwords: dict[str, str], admin: str, config: Path,
) -> tuple[dict[str, str], dict[str, str]]:
    """Start the server, create the streams as admin, then reload it
    without the admin user: nothing may change the streams' limits while
    the services run. Each role's URL and password file."""
    server = sup.add(nats_child(s, printer, config))
    server.start()
    admin_url = natsauth.url(access.ADMIN, admin, NATS_HOST, s.nats_port)
    ensure_topology(admin_url, topology)
    natsauth.write_config(s.data_dir, passwords, topology)
    drop_admin(server, admin_url)
    files = {role: str(f) for role, f in natsauth.write_password_files(s.data_dir, passwords).items()}
    urls = {role: natsauth.user_url(role, NATS_HOST, s.nats_port) for role in access.ROLES}
    return urls, files


def _prepare_service_environ(environ: dict[str, str], data_dir: Path, metrics_ports: Mapping[str, int]) -> str:
    """Make `environ` what every service starts from: the data dir absolute
    (the same place whatever a child's cwd), the metrics ports resolved,
    and secrets as files only (an environment is readable by more than a
    0600 file). The sign-in hint `up` prints when it made the API token."""
    environ["BREAKGLASS_DATA_DIR"] = str(data_dir)
    environ.update({f"BREAKGLASS_{name}": str(port) for name, port in metrics_ports.items()})
    for name in ("API_TOKEN", "METRICS_TOKEN"):
        value = environ.pop(f"BREAKGLASS_{name}", "").strip()
        if value:
            environ[f"BREAKGLASS_{name}_FILE"] = str(apitoken.write_secret(data_dir, name.lower(), value))
    if not apitoken.needed(environ):
        return ""
    token_file = apitoken.load_or_create(data_dir)
    environ["BREAKGLASS_API_TOKEN_FILE"] = str(token_file)
    return f"; sign in with the token in {token_file}"


def _start_services(
    sup: Supervisor, environ: dict[str, str], urls: dict[str, str], files: dict[str, str], printer: Printer,
) -> None:
    """Each service with its own NATS user's URL and password file; none
    more once a signal asked `up` to stop."""
    for name, module in SERVICES.items():
        if sup.stopping.is_set():
            break
        env = service_env(name, environ, urls[name], files.get(name))
        sup.add(service_child(name, module, env, printer)).start()
