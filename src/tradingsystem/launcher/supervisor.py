"""Talking to our supervisord: start it, and drive its programs over XML-RPC on the unix socket."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import psutil
from supervisor.xmlrpc import Faults, SupervisorTransport

from tradingsystem.launcher.plan import Paths

RUNNING_STATES = {"RUNNING", "STARTING"}
FAILED_STATES = {"BACKOFF", "FATAL", "EXITED", "UNKNOWN"}


class SupervisorError(RuntimeError):
    """supervisord could not be started or did not answer; the message says why."""


@dataclass(frozen=True)
class ProcessInfo:
    """One program as supervisord reports it."""

    name: str
    state: str
    pid: int
    start: int
    now: int
    exitstatus: int
    spawnerr: str
    description: str

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def uptime_s(self) -> int | None:
        return max(0, self.now - self.start) if self.state == "RUNNING" and self.start else None

    @classmethod
    def from_rpc(cls, info: dict[str, Any]) -> ProcessInfo:
        return cls(name=str(info["name"]), state=str(info["statename"]), pid=int(info["pid"]),
                   start=int(info["start"]), now=int(info["now"]), exitstatus=int(info["exitstatus"]),
                   spawnerr=str(info.get("spawnerr", "")), description=str(info.get("description", "")))


class Supervisor:
    """A client for the supervisord that owns `paths` (one per var directory)."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    def _proxy(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.paths.socket}")
        # The host part is ignored by the unix transport but xmlrpc needs a syntactically valid URL.
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def _call(self, method: str, *args: Any) -> Any:
        proxy = self._proxy()
        target = proxy
        for part in method.split("."):
            target = getattr(target, part)
        return target(*args)

    def alive(self) -> bool:
        """True when a supervisord answers on the socket."""
        if not self.paths.socket.exists():
            return False
        try:
            state = self._call("supervisor.getState")
        except (OSError, xmlrpc.client.Error):
            return False
        return bool(state.get("statename") == "RUNNING")

    def pid(self) -> int:
        return int(self._call("supervisor.getPID"))

    def launch(self, timeout_s: float = 15) -> int:
        """Start supervisord in the background with the rendered config and wait until it answers."""
        self.paths.socket.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.paths.socket.parent, 0o700)
        result = subprocess.run(self._supervisord_argv(), capture_output=True, text=True, check=False,
                                timeout=timeout_s)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise SupervisorError(f"supervisord did not start (exit {result.returncode}): {detail}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.alive():
                return self.pid()
            time.sleep(0.05)
        raise SupervisorError(f"supervisord did not answer on {self.paths.socket} within {timeout_s:.0f} s; "
                              f"see {self.paths.supervisord_log}")

    def _supervisord_argv(self) -> list[str]:
        script = Path(sys.executable).parent / "supervisord"
        base = [str(script)] if script.exists() else [sys.executable, "-m", "supervisor.supervisord"]
        return [*base, "-c", str(self.paths.config)]

    def reload_config(self) -> tuple[list[str], list[str], list[str]]:
        """Apply a rewritten config to the running supervisord, like `supervisorctl update`.
        Changed and removed programs are stopped first; returns (added, changed, removed)."""
        result = self._call("supervisor.reloadConfig")
        added, changed, removed = (list(map(str, names)) for names in result[0])
        for name in [*changed, *removed]:
            self.stop(name)
            self._call("supervisor.removeProcessGroup", name)
        for name in [*changed, *added]:
            self._call("supervisor.addProcessGroup", name)
        return added, changed, removed

    def processes(self) -> dict[str, ProcessInfo]:
        infos = cast(list[dict[str, Any]], self._call("supervisor.getAllProcessInfo"))
        return {info["name"]: ProcessInfo.from_rpc(info) for info in infos}

    def info(self, name: str) -> ProcessInfo:
        return ProcessInfo.from_rpc(self._call("supervisor.getProcessInfo", name))

    def start(self, name: str) -> None:
        """Ask supervisord to start `name` without waiting (the caller waits on health instead)."""
        try:
            self._call("supervisor.startProcess", name, False)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != Faults.ALREADY_STARTED:
                raise SupervisorError(f"supervisord could not start {name}: {fault.faultString}") from fault

    def stop(self, name: str) -> bool:
        """Stop `name` and wait for it; False when it was not running."""
        try:
            self._call("supervisor.stopProcess", name, True)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == Faults.NOT_RUNNING:
                return False
            if fault.faultCode == Faults.BAD_NAME:
                return False
            raise SupervisorError(f"supervisord could not stop {name}: {fault.faultString}") from fault
        return True

    def shutdown(self, timeout_s: float = 30) -> None:
        """Stop supervisord itself and wait until its process is gone."""
        pid = self.pid()
        self._call("supervisor.shutdown")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.05)
        raise SupervisorError(f"supervisord (pid {pid}) did not exit within {timeout_s:.0f} s")


def _pid_alive(pid: int) -> bool:
    try:
        # A zombie (an un-reaped child) has exited already.
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
