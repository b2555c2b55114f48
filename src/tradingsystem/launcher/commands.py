"""`up`, `down`, `status` and `logs`: the local stack under one supervisord, started in order and waited for."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import structlog
from rich.console import Console
from rich.table import Table

from tradingsystem.core.dbcli import SCHEMAS, embedded
from tradingsystem.core.embedded import EmbeddedPostgres, EmbeddedPostgresError, describe_port_owner, port_in_use
from tradingsystem.core.settings import ConfigError, DatabaseSettings
from tradingsystem.launcher.health import redact
from tradingsystem.launcher.plan import (
    STOP_ORDER,
    LauncherSettings,
    Paths,
    Plan,
    Program,
    UnrepresentableValue,
    build_plan,
    ensure_generated_token,
    paths,
    render_config,
    token_fingerprint,
)
from tradingsystem.launcher.supervisor import FAILED_STATES, ProcessInfo, Supervisor, SupervisorError
from tradingsystem.launcher.systemd import GATEWAY_UNIT, UnitControlError, UnitState, control_unit, gateway_unit

LOG_TAIL_LINES = 20
POLL_S = 0.1
DEFAULT_TIMEOUT_S = 60.0


def make_console() -> Console:
    """The launcher's terminal output; also keeps library chatter out of the step report."""
    quiet_libraries()
    # Piped output (scripts, tests) must not be wrapped at 80 columns.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def quiet_libraries() -> None:
    # The embedded-database and migration helpers log each step; the launcher reports steps itself.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


class UpFailed(Exception):
    """A step of `up` failed; the message names the component and the reason."""

    def __init__(self, component: str, reason: str, log_file: Path | None = None) -> None:
        super().__init__(f"{component}: {reason}")
        self.component = component
        self.reason = reason
        self.log_file = log_file


def tail_lines(path: Path, count: int = LOG_TAIL_LINES) -> list[str]:
    """The last `count` lines of a log file (reads only the end of big files)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-count:]


class Reporter:
    """One line per step, so that an operator sees what happened and what failed."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def ok(self, component: str, message: str) -> None:
        self.console.print(f"[green]✔[/green] {component:<12} {message}")

    def info(self, component: str, message: str) -> None:
        self.console.print(f"[cyan]•[/cyan] {component:<12} {message}")

    def fail(self, component: str, message: str, log_file: Path | None = None) -> None:
        self.console.print(f"[red]✘[/red] {component:<12} failed: {message}")
        if log_file is not None:
            lines = tail_lines(log_file)
            if lines:
                self.console.print(f"  last lines of {log_file}:")
                for line in lines:
                    self.console.print(f"    {line}", markup=False)
            else:
                self.console.print(f"  {log_file} is empty")


# -- up -------------------------------------------------------------------------------------------------


def write_config(where: Paths, text: str) -> None:
    where.supervisor_dir.mkdir(parents=True, exist_ok=True)
    where.supervisor_dir.chmod(0o700)
    where.logs.mkdir(parents=True, exist_ok=True)
    # The services' environment (the generated token among it) is in this file: owner only.
    fd = os.open(where.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    where.config.chmod(0o600)


def foreign_ports(programs: Iterable[Program], embedded_db: EmbeddedPostgres | None) -> list[str]:
    """Ports the programs to start need that another process holds: named with that process, never touched."""
    problems = []
    for program in programs:
        if not port_in_use(program.port):
            continue
        if program.name == "postgres" and embedded_db is not None and embedded_db.running_pid() is not None:
            continue  # our own database, started outside supervisord: handled by the caller
        problems.append(f"port {program.port} needed by {program.name} is already in use by "
                        f"{describe_port_owner(program.port)}")
    return problems


def _pg_ready(pg: EmbeddedPostgres) -> bool:
    result = pg._pg("pg_isready", "-q", "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, timeout=5)
    return result.returncode == 0


def _check_alive(sup: Supervisor, program: Program) -> ProcessInfo:
    info = sup.info(program.name)
    if info.state in FAILED_STATES:
        detail = info.spawnerr or (f"exit status {info.exitstatus}" if info.state == "EXITED" else "")
        reason = f"the process stopped right after starting (supervisord state {info.state}"
        reason += f": {detail})" if detail else ")"
        raise UpFailed(program.name, reason, sup.paths.log_file(program.name))
    return info


def _wait_running(sup: Supervisor, program: Program, deadline: float) -> None:
    """Ready is not yet RUNNING for supervisord: it says so once the process has lasted `startsecs`. Waiting for
    that too means that `status` right after `up` finds every program RUNNING."""
    while _check_alive(sup, program).state != "RUNNING":
        if time.monotonic() > deadline:
            raise UpFailed(program.name, "answering, but supervisord still reports it starting",
                           sup.paths.log_file(program.name))
        time.sleep(POLL_S)


def wait_postgres(sup: Supervisor, program: Program, pg: EmbeddedPostgres, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        _check_alive(sup, program)
        if _pg_ready(pg):
            _wait_running(sup, program, deadline)
            return
        if time.monotonic() > deadline:
            raise UpFailed(program.name, f"not accepting connections on 127.0.0.1:{program.port} within "
                           f"{timeout_s:.0f} s", sup.paths.log_file(program.name))
        time.sleep(POLL_S)


@dataclass
class Answer:
    code: int | None
    body: dict[str, Any]
    error: str = ""

    def describe(self) -> str:
        if self.code is None:
            return self.error or "no answer"
        detail = self.body.get("error") or self.body.get("status") or ""
        return f"HTTP {self.code}" + (f" ({detail})" if detail else "")


def probe(client: httpx.Client, url: str) -> Answer:
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        return Answer(None, {}, str(exc) or type(exc).__name__)
    try:
        body = response.json()
    except ValueError:
        body = {}
    return Answer(response.status_code, body if isinstance(body, dict) else {})


def service_ready(client: httpx.Client, program: Program) -> tuple[bool, Answer]:
    """Workspace and API: `/health` 200. Gateway: `/health/live` 200 and `/health` answering at all,
    because a gateway waiting for a Telegram login is running as designed."""
    if program.name == "gateway":
        live = probe(client, program.url + "/health/live")
        if live.code != 200:
            return False, live
        health = probe(client, program.url + "/health")
        return health.code is not None, health
    health = probe(client, program.url + "/health")
    return health.code == 200, health


def wait_service(sup: Supervisor | None, program: Program, timeout_s: float) -> Answer:
    deadline = time.monotonic() + timeout_s
    last = Answer(None, {}, "not started")
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            if sup is not None:
                _check_alive(sup, program)
            ready, last = service_ready(client, program)
            if ready:
                if sup is not None:
                    _wait_running(sup, program, deadline)
                return last
            if time.monotonic() > deadline:
                log_file = sup.paths.log_file(program.name) if sup is not None else None
                raise UpFailed(program.name, f"not healthy within {timeout_s:.0f} s (last answer: "
                               f"{last.describe()})", log_file)
            time.sleep(POLL_S)


def describe_health(program: Program, answer: Answer) -> str:
    if program.name == "gateway":
        telegram = answer.body.get("telegram", "?")
        return f"{answer.body.get('status', 'answering')} (telegram: {telegram}) at {program.url}"
    return f"healthy at {program.url}"


async def _migrate(dsn: str) -> list[str]:
    from tradingsystem.core.migrations import migrate

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await migrate(conn, SCHEMAS)
    finally:
        await conn.close()


def run_migrations(dsn: str) -> list[str]:
    try:
        return asyncio.run(_migrate(dsn))
    except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError) as exc:
        raise UpFailed("migrations", f"{redact(dsn)}: {exc}") from exc


def prepare_supervisor(plan: Plan, sup: Supervisor, reporter: Reporter) -> tuple[dict[str, ProcessInfo], bool]:
    """Bring the running supervisord's configuration up to date (if one runs); returns the program
    states and whether anything was changed."""
    if not sup.alive():
        return {}, False
    text = render_config(plan)
    old = plan.paths.config.read_text() if plan.paths.config.exists() else ""
    if old == text:
        reporter.ok("supervisord", f"already running (pid {sup.pid()})")
        return sup.processes(), False
    write_config(plan.paths, text)
    added, changed, removed = sup.reload_config()
    what = ", ".join(f"{label} {', '.join(names)}" for label, names in
                     (("added", added), ("changed", changed), ("removed", removed)) if names)
    reporter.ok("supervisord", f"running (pid {sup.pid()}); configuration updated: {what or 'no program changed'}")
    return sup.processes(), bool(added or changed or removed)


def adopt_stray_database(plan: Plan, reporter: Reporter) -> None:
    """Our own embedded PostgreSQL may run outside supervisord (`tradingsystem db migrate` starts it
    with pg_ctl): stop it cleanly so that supervisord can own it."""
    pg = plan.embedded_db
    if pg is None:
        return
    pid = pg.running_pid()
    if pid is None:
        return
    pg.stop("fast")
    reporter.info("postgres", f"stopped the embedded server started outside supervisord (pid {pid}) to run it "
                  "under supervisord")


def ensure_run_as_user(plan: Plan) -> None:
    """Create the OS user the embedded server runs as under root before any supervisord configuration
    names it: supervisord refuses a configuration with an unknown user (its data directory is made
    later, before the program is started)."""
    pg = plan.embedded_db
    if pg is None or "postgres" not in plan.programs:
        return
    try:
        pg.ensure_system_user()
    except (EmbeddedPostgresError, OSError) as exc:
        raise UpFailed("postgres", str(exc)) from exc


def up_local(plan: Plan, reporter: Reporter, timeout_s: float, only: set[str] | None = None) -> bool:
    """Start what is not running, in order; returns whether anything changed. Raises UpFailed."""
    sup = Supervisor(plan.paths)
    ensure_run_as_user(plan)
    states, changed = prepare_supervisor(plan, sup, reporter)
    wanted = [p for p in plan.ordered if only is None or p.name in only]
    to_start = [p for p in wanted if not (p.name in states and states[p.name].running)]
    problems = foreign_ports(to_start, plan.embedded_db)
    if problems:
        raise UpFailed("ports", "; ".join(problems) + ". Free the port or set another one "
                       "(WORKSPACE_PORT, API_PORT, GATEWAY_PORT, EMBEDDED_PG_PORT); nothing was stopped.")
    if not sup.alive():
        write_config(plan.paths, render_config(plan))
        started = time.monotonic()
        try:
            pid = sup.launch()
        except SupervisorError as exc:
            raise UpFailed("supervisord", str(exc), plan.paths.supervisord_log) from exc
        reporter.ok("supervisord", f"started (pid {pid}, {time.monotonic() - started:.1f} s)")
        changed = True
    names_to_start = {p.name for p in to_start}

    if "postgres" in plan.programs and (only is None or "postgres" in only):
        program = plan.programs["postgres"]
        pg = plan.embedded_db
        assert pg is not None
        if "postgres" in names_to_start:
            started = time.monotonic()
            adopt_stray_database(plan, reporter)
            fresh = not pg.initialized
            try:
                pg.init()
            except (EmbeddedPostgresError, OSError) as exc:
                raise UpFailed("postgres", str(exc), plan.paths.log_file("postgres")) from exc
            sup.start("postgres")
            wait_postgres(sup, program, pg, timeout_s)
            pg.ensure_database()
            note = "initialised a new cluster, " if fresh else ""
            reporter.ok("postgres", f"started: {note}accepting connections on 127.0.0.1:{pg.port} "
                        f"({time.monotonic() - started:.1f} s)")
        else:
            reporter.ok("postgres", f"already running (pid {states['postgres'].pid}) on 127.0.0.1:{pg.port}")

    if names_to_start & {"postgres", "workspace", "api"}:
        dsn = plan.database_url or configured_dsn()
        started = time.monotonic()
        applied = run_migrations(dsn)
        summary = f"applied {len(applied)}: {', '.join(applied)}" if applied else "up to date"
        reporter.ok("migrations", f"{summary} ({time.monotonic() - started:.1f} s)")

    # The two APIs start together; the gateway after the API, so that its first deliveries succeed.
    for group in (("workspace", "api"), ("gateway",)):
        batch = [plan.programs[name] for name in group if any(p.name == name for p in wanted)]
        launched = {p.name: time.monotonic() for p in batch if p.name in names_to_start}
        for name in launched:
            sup.start(name)
        for program in batch:
            answer = wait_service(sup, program, timeout_s)
            if program.name in launched:
                elapsed = time.monotonic() - launched[program.name]
                reporter.ok(program.name, f"started: {describe_health(program, answer)} ({elapsed:.1f} s)")
            else:
                reporter.ok(program.name, f"already running (pid {states[program.name].pid}): "
                            f"{describe_health(program, answer)}")
    return changed or bool(names_to_start)


def up_gateway_unit(unit: UnitState, program: Program, reporter: Reporter, timeout_s: float) -> bool:
    """The installed systemd unit runs the gateway: start it unless it runs, wait for its `/health`.
    Returns whether it had to be started."""
    started = time.monotonic()
    if not unit.running:
        try:
            control_unit(unit, "start")
        except UnitControlError as exc:
            raise UpFailed("gateway", f"{exc}; see `journalctl -u {GATEWAY_UNIT}`") from exc
    try:
        answer = wait_service(None, program, timeout_s)
    except UpFailed as exc:
        raise UpFailed("gateway", f"{exc.reason}; see `journalctl -u {GATEWAY_UNIT}`") from exc
    now = gateway_unit(unit.systemctl) or unit
    if unit.running:
        reporter.ok("gateway", f"{now.describe()}, already running: {describe_health(program, answer)}")
    else:
        reporter.ok("gateway", f"{now.describe()}, started: {describe_health(program, answer)} "
                    f"({time.monotonic() - started:.1f} s)")
    return not unit.running


def configured_dsn() -> str:
    try:
        return DatabaseSettings().dsn()
    except ConfigError as exc:
        raise UpFailed("database", str(exc)) from exc


def print_urls(plan: Plan, console: Console, gateway_by_unit: bool = False, started: bool = True) -> None:
    console.print()
    programs = plan.programs
    if "workspace" in programs:
        console.print(f"  Workspace API    {programs['workspace'].url}/api/items")
    if "api" in programs:
        console.print(f"  TP Capital API   {programs['api'].url}/signals")
    if "gateway" in programs:
        console.print(f"  Telegram Gateway {programs['gateway'].url}/health")
    if plan.database_url and plan.embedded_db is not None:
        console.print(f"  Database         {plan.database_url} (embedded, data in {plan.embedded_db.data_dir})")
    else:
        console.print("  Database         the configured one (DATABASE_URL / TIMESCALEDB_*)")
    if gateway_by_unit:
        console.print(f"\n  The gateway runs as the systemd unit {GATEWAY_UNIT}: its settings are in the unit's "
                      f"environment file, its log in `journalctl -u {GATEWAY_UNIT}`.")
    elif plan.demo_replay and started:
        console.print("\n  No Telegram account or bot is configured: the gateway replays the bundled sample "
                      f"channel, so signals appear at {programs['api'].url}/signals within seconds.")
    elif plan.demo_replay:
        # Nothing was started: the replay may have finished long ago, so promise nothing new.
        console.print("\n  No Telegram account or bot is configured: the gateway replays the bundled sample "
                      f"channel; what it delivered is at {programs['api'].url}/signals.")
    console.print("\n  Logs: tradingsystem logs \\[service] -f    Health: tradingsystem health    "
                  "Stop: tradingsystem down")


def prepare_plan(reporter: Reporter, local_database: bool = True) -> Plan:
    settings = LauncherSettings()
    where = paths()
    where.root.mkdir(parents=True, exist_ok=True)
    token = None
    if settings.gateway_secret_token is None:
        token, created = ensure_generated_token(where.secrets)
        if created:
            reporter.info("secrets", f"generated GATEWAY_SECRET_TOKEN into {where.secrets} (0600, fingerprint "
                          f"{token_fingerprint(token)}), shared by the API and the gateway")
    return build_plan(settings, token=token, local_database=local_database)


def up_command(timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    console = make_console()
    reporter = Reporter(console)
    started = time.monotonic()
    try:
        plan = prepare_plan(reporter)
    except (OSError, ValueError) as exc:
        reporter.fail("configuration", str(exc))
        return 1
    # An installed gateway unit replaces the local gateway process (never both: they share the port).
    unit = gateway_unit()
    only = None if unit is None else set(plan.programs) - {"gateway"}
    try:
        changed = up_local(plan, reporter, timeout_s, only=only)
        if unit is not None:
            changed = up_gateway_unit(unit, plan.programs["gateway"], reporter, timeout_s) or changed
    except UpFailed as exc:
        reporter.fail(exc.component, exc.reason, exc.log_file)
        if unit is None or exc.component != "gateway":  # systemd, not supervisord, restarts the unit
            stop_failed(plan, exc.component)
        if Supervisor(plan.paths).alive():
            console.print("\nWhat did start is still running: `tradingsystem status`, `tradingsystem down`.")
        return 1
    except SupervisorError as exc:
        reporter.fail("supervisord", str(exc), plan.paths.supervisord_log)
        return 1
    except UnrepresentableValue as exc:
        reporter.fail("configuration", str(exc))
        return 1
    if changed:
        console.print(f"\nAll services are up ({time.monotonic() - started:.1f} s).")
    else:
        console.print("\nNothing to do: everything was already running; nothing changed.")
    print_urls(plan, console, gateway_by_unit=unit is not None, started=changed)
    return 0


def stop_failed(plan: Plan, component: str) -> None:
    """Stop a program that failed to come up, so that supervisord does not keep restarting it."""
    if component not in plan.programs:
        return
    sup = Supervisor(plan.paths)
    try:
        if sup.alive():
            sup.stop(component)
    except SupervisorError:
        pass


# -- down -----------------------------------------------------------------------------------------------


def known_ports(settings: LauncherSettings | None = None) -> dict[str, int]:
    settings = settings or LauncherSettings()
    ports = {"workspace": settings.workspace_port, "api": settings.api_port, "gateway": settings.gateway_port}
    if not DatabaseSettings().configured:
        ports["postgres"] = embedded().port
    return ports


def down_local(reporter: Reporter) -> bool:
    """Stop the services, then the database, then supervisord; returns whether anything was running."""
    where = paths()
    sup = Supervisor(where)
    anything = False
    if sup.alive():
        anything = True
        states = sup.processes()
        for name in STOP_ORDER:
            info = states.get(name)
            if info is None:
                continue
            started = time.monotonic()
            if sup.stop(name):
                reporter.ok(name, f"stopped (was pid {info.pid}, {time.monotonic() - started:.1f} s)")
            else:
                reporter.ok(name, "was not running")
        supervisord_pid = sup.pid()
        sup.shutdown()
        reporter.ok("supervisord", f"stopped (was pid {supervisord_pid})")
    if not DatabaseSettings().configured:
        pg = embedded()
        pid = pg.running_pid()
        if pid is not None:
            anything = True
            pg.stop("fast")
            reporter.ok("postgres", f"stopped the embedded server running outside supervisord (was pid {pid})")
    return anything


def wait_ports_free(ports: dict[str, int], timeout_s: float = 15) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    busy = dict(ports)
    while busy and time.monotonic() < deadline:
        busy = {name: port for name, port in busy.items() if port_in_use(port)}
        if busy:
            time.sleep(POLL_S)
    return busy


def down_command() -> int:
    console = make_console()
    reporter = Reporter(console)
    anything = False
    unit = gateway_unit()
    if unit is not None and unit.active_state not in ("inactive", "failed"):
        started = time.monotonic()
        try:
            control_unit(unit, "stop")
        except UnitControlError as exc:
            reporter.fail("gateway", str(exc))
            return 1
        pid = f"was pid {unit.main_pid}, " if unit.main_pid else ""
        reporter.ok("gateway", f"systemd unit {GATEWAY_UNIT} stopped ({pid}{time.monotonic() - started:.1f} s)")
        anything = True
    try:
        anything = down_local(reporter) or anything
    except SupervisorError as exc:
        reporter.fail("supervisord", str(exc))
        return 1
    if not anything:
        console.print("Nothing is running: nothing to stop.")
        for name, port in known_ports().items():
            if port_in_use(port):
                # Not under our supervisord (another program, or a service left behind by a killed
                # supervisord): named so the operator can decide, never stopped from here.
                console.print(f"  note: port {port} ({name}) is in use by {describe_port_owner(port)}; "
                              "not started by this launcher, left alone")
        return 0
    busy = wait_ports_free(known_ports())
    if busy:
        for name, port in busy.items():
            reporter.fail(name, f"port {port} is still in use by {describe_port_owner(port)}")
        return 1
    console.print("\nEverything is stopped; every port is free.")
    return 0


# -- status ---------------------------------------------------------------------------------------------

EXIT_LINE = re.compile(r"exited: (?P<name>[\w-]+) \((?P<reason>[^)]*)\)")


def unexpected_exits(log_file: Path) -> dict[str, tuple[int, str]]:
    """Per program: how many unexpected exits supervisord logged since it last started, and the last reason."""
    counts: dict[str, tuple[int, str]] = {}
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        if "supervisord started with pid" in line:
            counts = {}
            continue
        match = EXIT_LINE.search(line)
        if match and "not expected" in match["reason"]:
            count, _ = counts.get(match["name"], (0, ""))
            counts[match["name"]] = (count + 1, match["reason"].replace("; not expected", ""))
    return counts


def format_uptime(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def status_data() -> dict[str, Any]:
    where = paths()
    sup = Supervisor(where)
    if not sup.alive():
        return {"supervisord": {"running": False, "pid": None, "socket": str(where.socket)}, "programs": []}
    ports = known_ports()
    exits = unexpected_exits(where.supervisord_log)
    order = {name: index for index, name in enumerate(reversed(STOP_ORDER))}
    programs = []
    unit = gateway_unit()
    for name, info in sorted(sup.processes().items(), key=lambda item: order.get(item[0], 99)):
        count, reason = exits.get(name, (0, ""))
        if name == "gateway" and unit is not None:
            # The installed unit runs the gateway, not this supervisord: report what systemd says.
            programs.append({
                "name": name, "state": "RUNNING" if unit.active_state == "active" else unit.active_state.upper(),
                "pid": unit.main_pid or None, "uptime": None, "port": ports.get(name),
                "unexpectedExits": unit.restarts, "lastExit": None, "log": f"journalctl -u {GATEWAY_UNIT}",
                "manager": unit.describe(),
            })
            continue
        programs.append({
            "name": name,
            "state": info.state,
            "pid": info.pid or None,
            "uptime": info.uptime_s,
            "port": ports.get(name),
            "unexpectedExits": count,
            "lastExit": reason or None,
            "log": str(where.log_file(name)),
        })
    return {"supervisord": {"running": True, "pid": sup.pid(), "socket": str(where.socket)}, "programs": programs}


def status_command(as_json: bool = False) -> int:
    """0 when every program runs, 3 when nothing runs, 1 when some program is not running."""
    data = status_data()
    programs = data["programs"]
    if not data["supervisord"]["running"]:
        code = 3
    elif all(p["state"] == "RUNNING" for p in programs):
        code = 0
    else:
        code = 1
    if as_json:
        print(json.dumps(data, indent=2))
        return code
    console = make_console()
    if code == 3:
        console.print("Nothing is running (no supervisord for this var directory). Start with `tradingsystem up`.")
        return code
    table = Table(title=f"supervisord pid {data['supervisord']['pid']}")
    for column in ("program", "state", "pid", "uptime", "port", "unexpected exits"):
        table.add_column(column)
    for p in programs:
        colour = "green" if p["state"] == "RUNNING" else "red"
        exits = str(p["unexpectedExits"]) + (f" (last: {p['lastExit']})" if p["lastExit"] else "")
        table.add_row(p["name"], f"[{colour}]{p['state']}[/{colour}]", str(p["pid"] or "-"),
                      format_uptime(p["uptime"]), str(p["port"] or "-"), exits)
    console.print(table)
    return code


# -- logs -----------------------------------------------------------------------------------------------

LOG_NAMES = ("postgres", "workspace", "api", "gateway", "supervisord")


def log_files(service: str | None) -> dict[str, Path]:
    where = paths()
    names = [service] if service else list(LOG_NAMES)
    return {name: where.supervisord_log if name == "supervisord" else where.log_file(name) for name in names}


def logs_command(service: str | None = None, follow: bool = False, lines: int = 100) -> int:
    files = log_files(service)
    existing = {name: path for name, path in files.items() if path.exists()}
    if not existing and not follow:
        print(f"No logs yet under {paths().logs} (start the services with `tradingsystem up`).", file=sys.stderr)
        return 1
    prefix = len(files) > 1
    width = max(len(name) for name in files)

    def emit(name: str, line: str) -> None:
        sys.stdout.write((f"{name.ljust(width)} | " if prefix else "") + line + "\n")

    # Followers note where each file ends before the tails are printed: no line falls in between.
    followers = {name: Follower(path) for name, path in files.items()} if follow else {}
    for name, path in existing.items():
        for line in tail_lines(path, lines) if lines else []:
            emit(name, line)
    sys.stdout.flush()
    if not follow:
        return 0
    try:
        while True:
            wrote = False
            for name, follower in followers.items():
                for line in follower.read_new():
                    emit(name, line)
                    wrote = True
            if wrote:
                sys.stdout.flush()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0


class Follower:
    """Reads what is appended to a log file, across supervisord's rotations (the file is renamed and
    a new one created) and truncations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inode: int | None = None
        self.offset = 0
        self.partial = b""
        try:
            stat = path.stat()
        except OSError:
            return
        self.inode = stat.st_ino
        self.offset = stat.st_size

    def read_new(self) -> list[str]:
        try:
            stat = self.path.stat()
        except OSError:
            return []
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            self.inode, self.offset, self.partial = stat.st_ino, 0, b""
        if stat.st_size == self.offset:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        data = self.partial + data
        *complete, self.partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in complete]
