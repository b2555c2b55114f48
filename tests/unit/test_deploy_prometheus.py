"""Checks the Prometheus scrape config and alert rules with promtool, including the rules' unit tests."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
SCRAPED = {"telegram-gateway": 4006, "tp-capital-api": 4005, "workspace": 3200}
# Names from the external contract; the rules must use exactly these.
CONTRACT_METRICS = {
    "telegram_connection_status",
    "telegram_failure_queue_size",
    "telegram_failure_queue_bytes",
    "tpcapital_database_connection_status",
    "workspace_database_connection_status",
    "up",
}


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed (Debian package `prometheus`; `make test` installs it)")
    return subprocess.run([found, *args], capture_output=True, text=True, check=False, cwd=cwd)


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in load(ALERTS)["groups"] for rule in group["rules"]}


def test_promtool_check_config() -> None:
    result = promtool("check", "config", CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "1 rule files found" in result.stdout


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", ALERTS_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    # The same tests against rules whose gateway alert waits 10 minutes instead of 1 must fail.
    gateway_rule = 'expr: up{job="telegram-gateway"} == 0\n        for: '
    slow = ALERTS.read_text(encoding="utf-8").replace(gateway_rule + "1m", gateway_rule + "10m")
    assert slow != ALERTS.read_text(encoding="utf-8")
    (tmp_path / "alerts.yml").write_text(slow, encoding="utf-8")
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yml")
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "TelegramGatewayDown" in result.stdout + result.stderr


def test_every_service_is_scraped_on_its_metrics_endpoint() -> None:
    jobs = {job["job_name"]: job for job in load(CONFIG)["scrape_configs"]}
    assert set(jobs) == set(SCRAPED)
    for name, port in SCRAPED.items():
        job = jobs[name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [t for static in job["static_configs"] for t in static["targets"]]
        assert [int(t.rsplit(":", 1)[1]) for t in targets] == [port], targets


def test_config_loads_the_alert_rules() -> None:
    assert load(CONFIG)["rule_files"] == [ALERTS.name]


EXPECTED_ALERTS = {
    "TelegramGatewayDown": ('up{job="telegram-gateway"} == 0', "1m"),
    "TpCapitalApiDown": ('up{job="tp-capital-api"} == 0', "1m"),
    "WorkspaceApiDown": ('up{job="workspace"} == 0', "1m"),
    "TelegramDisconnected": ("telegram_connection_status == 0", "1m"),
    "TpCapitalDatabaseDisconnected": ("tpcapital_database_connection_status == 0", "1m"),
    "WorkspaceDatabaseDisconnected": ("workspace_database_connection_status == 0", "1m"),
}


@pytest.mark.parametrize(("alert", "spec"), sorted(EXPECTED_ALERTS.items()))
def test_availability_alerts(alert: str, spec: tuple[str, str]) -> None:
    rule = rules()[alert]
    assert (rule["expr"].strip(), rule["for"]) == spec
    assert rule["labels"]["severity"] == "critical"
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_failure_queue_alerts() -> None:
    all_rules = rules()
    growing = all_rules["TelegramFailureQueueGrowing"]["expr"]
    assert re.search(r"\b(deriv|delta)\(telegram_failure_queue_size\[\d+m\]\)\s*>\s*0", growing)
    near_cap = all_rules["TelegramFailureQueueNearCap"]["expr"]
    assert "telegram_failure_queue_bytes" in near_cap and "104857600" in near_cap


def test_rules_use_only_contract_metric_names() -> None:
    functions = {"delta", "deriv", "and", "or", "unless", "rate", "increase", "absent"}
    for name, rule in rules().items():
        expr = re.sub(r"\{[^}]*\}|\[[^]]*\]", "", rule["expr"])
        identifiers = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", expr)) - functions
        assert identifiers <= CONTRACT_METRICS, f"{name}: {identifiers - CONTRACT_METRICS}"


def test_every_alert_has_a_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in load(ALERTS_TEST)["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert tested == set(rules())
