"""The launcher's view of the gateway's systemd unit: installed or not, its state, and systemctl's errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradingsystem.launcher.systemd import GATEWAY_UNIT, UnitControlError, control_unit, gateway_unit


def stand_in(tmp_path: Path, name: str, script: str) -> str:
    """A real executable playing systemctl, which this machine does not run as PID 1 (the container suite does)."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


def test_an_installed_running_unit_is_described(tmp_path: Path) -> None:
    systemctl = stand_in(tmp_path, "systemctl", 'printf "LoadState=loaded\\nActiveState=active\\nSubState=running\\n'
                         'MainPID=4242\\nNRestarts=1\\n"\n')
    unit = gateway_unit(systemctl)
    assert unit is not None and unit.running
    assert unit.describe() == f"systemd unit {GATEWAY_UNIT} active (running, pid 4242, 1 restart)"


def test_a_stopped_unit_is_installed_but_not_running(tmp_path: Path) -> None:
    systemctl = stand_in(tmp_path, "systemctl", 'printf "LoadState=loaded\\nActiveState=failed\\nSubState=failed\\n'
                         'MainPID=0\\nNRestarts=0\\n"\n')
    unit = gateway_unit(systemctl)
    assert unit is not None and not unit.running
    assert unit.describe() == f"systemd unit {GATEWAY_UNIT} failed (failed)"


@pytest.mark.parametrize("script", [
    'printf "LoadState=not-found\\nActiveState=inactive\\n"\n',  # no such unit
    'printf "LoadState=masked\\nActiveState=inactive\\n"\n',
    "echo 'System has not been booted with systemd as init system (PID 1).' >&2; exit 1\n",
])
def test_no_usable_unit(tmp_path: Path, script: str) -> None:
    assert gateway_unit(stand_in(tmp_path, "systemctl", script)) is None


def test_control_errors_carry_systemctl_words_and_a_hint(tmp_path: Path) -> None:
    systemctl = stand_in(tmp_path, "systemctl", 'case "$1" in show) printf "LoadState=loaded\\nActiveState=inactive\\n";; '
                         '*) echo "Failed to start tp-capital-gateway.service: Access denied" >&2; exit 4;; esac\n')
    unit = gateway_unit(systemctl)
    assert unit is not None
    with pytest.raises(UnitControlError, match=r"systemctl start .* failed: .*Access denied \(run it as root: sudo\)"):
        control_unit(unit, "start")
