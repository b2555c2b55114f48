"""Checks both compose files against the compose-spec schema and the project's deployment rules."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "tools" / "compose"
DATABASE_FILE = COMPOSE_DIR / "docker-compose.database.yml"
APPS_FILE = COMPOSE_DIR / "docker-compose.apps.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
NETWORK = "tradingsystem_backend"
APP_PORTS = {"tp-capital-api": 4005, "workspace": 3200}
DEV_SERVICES = {"tp-capital-api-dev": ("api", 4005), "workspace-dev": ("workspace", 3200)}


def find_tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (it comes with the project's dev extra)")
    return found


DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def resolve(text: str, **variables: str) -> str:
    """`${NAME:-default}` as compose reads it with `variables` set and nothing else (`${NAME:?message}` stays)."""
    return DEFAULTED.sub(lambda m: variables.get(m.group(1), m.group(2)), text)


def load(path: Path, *, interpolate: bool = False, **variables: str) -> dict[str, Any]:
    """The file as written, or with `interpolate` as compose reads it (see `resolve`)."""
    text = path.read_text(encoding="utf-8")
    if interpolate:
        text = resolve(text, **variables)
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    assert isinstance(env, dict)
    return env


def published(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) for each entry, short or long syntax."""
    result = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            result.add((int(resolve(str(entry["published"]))), int(entry["target"])))
        else:
            parts = resolve(str(entry)).split(":")
            result.add((int(parts[-2]), int(parts[-1].split("/")[0])))
    return result


def check_schema(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *map(str, paths)],
        capture_output=True, text=True, check=False,
    )


def docker_targets() -> set[str]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE))


@pytest.fixture(scope="module")
def database() -> dict[str, Any]:
    return load(DATABASE_FILE)


@pytest.fixture(scope="module")
def apps() -> dict[str, Any]:
    return load(APPS_FILE)


# ---------------------------------------------------------------------------- schema


def test_both_files_match_the_compose_spec_schema() -> None:
    result = check_schema(DATABASE_FILE, APPS_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        "services:\n  db:\n    image: postgres\n    healthcheck:\n      tests: [CMD, pg_isready]\n",
        encoding="utf-8",
    )
    result = check_schema(broken)
    assert result.returncode != 0
    assert "tests" in result.stdout + result.stderr


# ---------------------------------------------------------------------------- database file


def test_timescaledb_image_is_a_variable_defaulting_to_a_pinned_pg15_tag(database: dict[str, Any]) -> None:
    # pg15: the major version of the locally built TimescaleDB image the suite runs on.
    image = database["services"]["timescaledb"]["image"]
    assert re.fullmatch(r"\$\{TIMESCALEDB_IMAGE:-timescale/timescaledb:\d+\.\d+\.\d+-pg15\}", image), image


def test_timescaledb_publishes_5433_on_the_host(database: dict[str, Any]) -> None:
    assert (5433, 5432) in published(database["services"]["timescaledb"])


def test_timescaledb_healthcheck_uses_pg_isready(database: dict[str, Any]) -> None:
    service = database["services"]["timescaledb"]
    check = service["healthcheck"]
    test = check["test"]
    joined = test if isinstance(test, str) else " ".join(test)
    assert "pg_isready" in joined
    # `$$` is compose's escape: the container's shell, not compose, expands these.
    assert "$${POSTGRES_USER}" in joined and "$${POSTGRES_DB}" in joined
    assert check["retries"] >= 3
    assert service["restart"] == "unless-stopped"


def test_timescaledb_data_is_a_named_volume(database: dict[str, Any]) -> None:
    mounts = database["services"]["timescaledb"]["volumes"]
    data_mounts = [m for m in mounts if str(m).endswith(":/var/lib/postgresql/data")]
    assert len(data_mounts) == 1
    volume = data_mounts[0].split(":")[0]
    assert not volume.startswith((".", "/")), "a bind mount, not a named volume"
    assert volume in database["volumes"]


def test_database_file_creates_the_backend_network_by_name() -> None:
    database = load(DATABASE_FILE, interpolate=True)
    network = database["networks"][NETWORK]
    assert network["name"] == NETWORK
    assert not network.get("external", False)
    assert NETWORK in database["services"]["timescaledb"]["networks"]


def test_database_password_is_required_from_the_environment(database: dict[str, Any]) -> None:
    env = environment(database["services"]["timescaledb"])
    assert re.fullmatch(r"\$\{TIMESCALEDB_PASSWORD:\?[^}]+\}", env["POSTGRES_PASSWORD"])


@pytest.mark.parametrize("path", [DATABASE_FILE, APPS_FILE], ids=lambda p: p.name)
def test_no_literal_password_anywhere(path: Path) -> None:
    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for child_key, child in node.items():
                walk(child, str(child_key))
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, str) and "=" in item:
                    name, _, value = item.partition("=")
                    walk(value, name)
                else:
                    walk(item, key)
        elif re.search(r"PASSWORD|SECRET|TOKEN|API_KEY", key, re.IGNORECASE) and node is not None:
            assert isinstance(node, str) and re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]+)?\}", node), (
                f"{path.name}: {key} must come from the environment, got {node!r}"
            )

    walk(load(path))
    assert "postgresql://" not in path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------- apps file


@pytest.mark.parametrize(("name", "port"), sorted(APP_PORTS.items()))
def test_app_services_build_their_target_and_publish_their_port(
    apps: dict[str, Any], name: str, port: int
) -> None:
    service = apps["services"][name]
    build = service["build"]
    assert (COMPOSE_DIR / build["context"]).resolve() == ROOT
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert build["target"] in docker_targets()
    assert build["target"] == {"tp-capital-api": "api", "workspace": "workspace"}[name]
    assert published(service) == {(port, port)}
    assert "profiles" not in service


@pytest.mark.parametrize("name", [*APP_PORTS, *DEV_SERVICES])
def test_app_services_are_supervised_and_rotate_their_logs(apps: dict[str, Any], name: str) -> None:
    service = apps["services"][name]
    assert service["restart"] == "unless-stopped"
    assert service["logging"] == {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}
    port = APP_PORTS.get(name) or DEV_SERVICES[name][1]
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and "curl" not in test
    assert f"http://127.0.0.1:{port}/health" in " ".join(test)
    compile(test[-1], "<healthcheck>", "exec")
    assert NETWORK in service["networks"]


@pytest.mark.parametrize("name", [*APP_PORTS, *DEV_SERVICES])
def test_app_services_reach_the_database_inside_the_network(apps: dict[str, Any], name: str) -> None:
    env = environment(apps["services"][name])
    assert env["TIMESCALEDB_HOST"] == "timescaledb"
    assert str(env["TIMESCALEDB_PORT"]) == "5432"
    assert re.fullmatch(r"\$\{TIMESCALEDB_PASSWORD:\?[^}]+\}", env["TIMESCALEDB_PASSWORD"])
    for key in ("TIMESCALEDB_USER", "TIMESCALEDB_DATABASE"):
        assert env[key].startswith("${" + key)
    # Same defaults on both sides, or the apps would log in as a user the database never created.
    db_env = environment(load(DATABASE_FILE)["services"]["timescaledb"])
    assert env["TIMESCALEDB_USER"] == db_env["POSTGRES_USER"]
    assert env["TIMESCALEDB_DATABASE"] == db_env["POSTGRES_DB"]
    assert "DATABASE_URL" not in env


@pytest.mark.parametrize("name", ["tp-capital-api", "tp-capital-api-dev"])
def test_api_requires_the_gateway_token(apps: dict[str, Any], name: str) -> None:
    env = environment(apps["services"][name])
    assert re.fullmatch(r"\$\{GATEWAY_SECRET_TOKEN:\?[^}]+\}", env["GATEWAY_SECRET_TOKEN"])


def test_workspace_gets_no_gateway_token(apps: dict[str, Any]) -> None:
    for name in ("workspace", "workspace-dev"):
        assert "GATEWAY_SECRET_TOKEN" not in environment(apps["services"][name])


def test_no_telegram_variable_in_the_apps_file(apps: dict[str, Any]) -> None:
    assert "TELEGRAM_" not in APPS_FILE.read_text(encoding="utf-8")
    for name, service in apps["services"].items():
        # An env_file would pass every variable of a shared .env, Telegram secrets included.
        assert "env_file" not in service, name
        assert not any(key.upper().startswith("TELEGRAM") for key in environment(service)), name


def test_apps_join_the_external_backend_network() -> None:
    apps = load(APPS_FILE, interpolate=True)
    network = apps["networks"][NETWORK]
    assert network == {"name": NETWORK, "external": True}


def test_one_variable_names_a_whole_second_stack() -> None:
    # A second stack (a test run beside an operator's) changes TRADINGSYSTEM_STACK and the host ports only.
    database = load(DATABASE_FILE, interpolate=True, TRADINGSYSTEM_STACK="other", TIMESCALEDB_PORT="15433")
    apps = load(APPS_FILE, interpolate=True, TRADINGSYSTEM_STACK="other", API_PORT="14005", WORKSPACE_PORT="13200")
    assert (database["name"], apps["name"]) == ("other-database", "other-apps")
    assert database["networks"][NETWORK]["name"] == apps["networks"][NETWORK]["name"] == "other_backend"
    assert database["volumes"]["timescaledb-data"]["name"] == "other_timescaledb_data"
    assert (15433, 5432) in published(database["services"]["timescaledb"])
    assert published(apps["services"]["tp-capital-api"]) == {(14005, 4005)}
    assert published(apps["services"]["workspace"]) == {(13200, 3200)}
    # Inside the containers the services keep their own ports whatever the host side is.
    assert environment(apps["services"]["tp-capital-api"])["API_PORT"] == "4005"
    assert environment(apps["services"]["workspace"])["WORKSPACE_PORT"] == "3200"


def test_defaults_keep_the_operators_names() -> None:
    database, apps = load(DATABASE_FILE, interpolate=True), load(APPS_FILE, interpolate=True)
    assert (database["name"], apps["name"]) == ("tradingsystem-database", "tradingsystem-apps")
    assert database["volumes"]["timescaledb-data"]["name"] == "tradingsystem_timescaledb_data"


@pytest.mark.parametrize("name", [*APP_PORTS, *DEV_SERVICES])
def test_the_base_image_is_passed_to_the_build_only_when_set(apps: dict[str, Any], name: str) -> None:
    # A bare name: compose passes BASE_IMAGE when the caller sets it, else the Dockerfile's default applies.
    assert apps["services"][name]["build"]["args"] == ["BASE_IMAGE"]


def test_apps_and_database_are_separate_projects(apps: dict[str, Any], database: dict[str, Any]) -> None:
    # One project name for both files would make each `up` treat the other's containers as orphans.
    assert apps["name"] != database["name"]


@pytest.mark.parametrize(("name", "spec"), sorted(DEV_SERVICES.items()))
def test_dev_profile_mounts_the_source_and_reloads(
    apps: dict[str, Any], name: str, spec: tuple[str, int]
) -> None:
    service_name, port = spec
    service = apps["services"][name]
    assert service["profiles"] == ["dev"]
    assert service["build"]["target"] == "dev" and "dev" in docker_targets()
    assert service["command"] == ["tradingsystem", "serve", service_name, "--reload"]
    mounts = [str(m).split(":") for m in service["volumes"]]
    assert any(
        (COMPOSE_DIR / source).resolve() == ROOT / "src" and target == "/app/src" for source, target, *_ in mounts
    ), mounts
    assert published(service) == {(port, port)}


def test_only_dev_services_reload(apps: dict[str, Any]) -> None:
    for name, service in apps["services"].items():
        reloads = "--reload" in " ".join(service.get("command", []))
        assert reloads == (service.get("profiles") == ["dev"]), name
