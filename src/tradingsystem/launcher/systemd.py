"""The gateway's systemd unit as the launcher sees it: installed or not, its `is-active` state, start and stop."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

GATEWAY_UNIT = "tp-capital-gateway.service"
SYSTEMCTL_TIMEOUT_S = 10.0
# `systemctl stop` waits for the unit's own TimeoutStopSec (40 s) and the final kill; leave room for both.
CONTROL_TIMEOUT_S = 120.0


class UnitControlError(RuntimeError):
    """`systemctl start|stop` failed; the message carries systemctl's own words."""


@dataclass(frozen=True)
class UnitState:
    """What `systemctl show` says about an installed unit; `active_state` is what `systemctl is-active` prints."""

    systemctl: str
    active_state: str
    sub_state: str
    main_pid: int
    restarts: int

    @property
    def running(self) -> bool:
        """Active or on its way there (a scheduled restart counts: systemd is bringing it back)."""
        return self.active_state in ("active", "activating", "reloading")

    def describe(self) -> str:
        pid = f", pid {self.main_pid}" if self.main_pid else ""
        restarts = f", {self.restarts} restart{'s' if self.restarts != 1 else ''}" if self.restarts else ""
        return f"systemd unit {GATEWAY_UNIT} {self.active_state} ({self.sub_state}{pid}{restarts})"


def _parse_show(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def gateway_unit(systemctl: str | None = None) -> UnitState | None:
    """The installed gateway unit, or None: no systemctl, systemd not running this machine, or no such unit."""
    systemctl = systemctl or shutil.which("systemctl")
    if systemctl is None:
        return None
    try:
        result = subprocess.run(
            [systemctl, "show", GATEWAY_UNIT, "--no-pager",
             "--property=LoadState,ActiveState,SubState,MainPID,NRestarts"],
            capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:  # e.g. "System has not been booted with systemd as init system"
        return None
    values = _parse_show(result.stdout)
    if values.get("LoadState") != "loaded":  # not-found, masked, bad-setting: not a usable installation
        return None
    return UnitState(
        systemctl=systemctl,
        active_state=values.get("ActiveState", "unknown"),
        sub_state=values.get("SubState", "unknown"),
        main_pid=int(values.get("MainPID", "0") or 0),
        restarts=int(values.get("NRestarts", "0") or 0),
    )


def control_unit(unit: UnitState, action: str) -> None:
    """`systemctl start|stop` the gateway unit (never asking for a password); raises UnitControlError."""
    argv = [unit.systemctl, action, "--no-ask-password", GATEWAY_UNIT]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=CONTROL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise UnitControlError(f"`{' '.join(argv)}` did not finish within {CONTROL_TIMEOUT_S:.0f} s") from exc
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}").splitlines()[-1]
        hint = " (run it as root: sudo)" if "auth" in said.lower() or "access denied" in said.lower() else ""
        raise UnitControlError(f"`systemctl {action} {GATEWAY_UNIT}` failed: {said}{hint}")
