"""Checks the container image definition: hadolint, stages, non-root user, curl-free health checks."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SERVICE_TARGETS = {"api": 4005, "workspace": 3200}


def find_tool(name: str) -> str:
    """A tool from this virtualenv (PyPI wheels put binaries beside the interpreter) or from PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (it comes with the project's dev extra)")
    return found


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)
    # The ARGs declared before the first FROM, with their defaults: what a FROM line may refer to.
    global_args: dict[str, str] = field(default_factory=dict)

    @property
    def default_base(self) -> str:
        """The base with the global build arguments at their defaults (`docker build` without --build-arg)."""
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.global_args[m.group(1) or m.group(2)], self.base)

    def values(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


def parse_dockerfile(text: str) -> dict[str, Stage]:
    """Stages by name (unnamed ones by index), with continuation lines joined and comments dropped."""
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append(buffer + stripped)
        buffer = ""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    global_args: dict[str, str] = {}
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            match = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", args, re.IGNORECASE)
            assert match, f"unreadable FROM line: {line}"
            name = match.group(2) or str(len(stages))
            current = Stage(name=name, base=match.group(1), global_args=global_args)
            stages[name] = current
        elif current is not None:
            current.instructions.append((keyword, args))
        elif keyword == "ARG":
            key, _, default = args.partition("=")
            global_args[key] = default
    return stages


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    result = []
    stage: Stage | None = stages[name]
    while stage is not None:
        result.append(stage)
        stage = stages.get(stage.base)
    return result


def effective(stages: dict[str, Stage], name: str, keyword: str) -> str | None:
    """The value a target ends up with for a keyword that later stages override (USER, CMD, ...)."""
    for stage in chain(stages, name):
        found = stage.values(keyword)
        if found:
            return found[-1]
    return None


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run(
        [find_tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_is_really_linting(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n", encoding="utf-8")
    result = subprocess.run(
        [find_tool("hadolint"), "--no-color", "--format", "json", str(bad)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3002"} <= codes


def test_all_images_start_from_one_base_given_as_a_build_argument(stages: dict[str, Stage]) -> None:
    external = [stage for stage in stages.values() if stage.base not in stages]
    # One external base, named by the BASE_IMAGE argument: CI passes a locally built one.
    assert {stage.base for stage in external} == {"${BASE_IMAGE}"}
    assert {stage.default_base for stage in external} == {"python:3.12-slim"}


def test_the_image_works_with_python3_only_bases(stages: dict[str, Stage]) -> None:
    # Debian's python3 package has no `python` command: everything before the virtualenv exists calls python3,
    # and what runs later (health checks, CMD) finds the virtualenv's `python` first on PATH.
    runs = [run for stage in stages.values() for run in stage.values("RUN")]
    venv = [run for run in runs if "-m venv" in run]
    assert venv and all(run.startswith("python3 -m venv /opt/venv") for run in venv)
    assert not any(re.match(r"python\s", run) for run in runs)
    env = " ".join(stages["base"].values("ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env


def test_the_base_label_names_the_base_actually_used(stages: dict[str, Stage]) -> None:
    labels = " ".join(stages["base"].values("LABEL"))
    assert 'org.opencontainers.image.base.name="${BASE_IMAGE}"' in labels
    assert "BASE_IMAGE" in [arg.partition("=")[0] for arg in stages["base"].values("ARG")]


def test_nothing_machine_specific_in_the_dockerfile() -> None:
    # The local CA bundle and mirror belong to CI's locally built base image, never to the project's images.
    text = DOCKERFILE.read_text(encoding="utf-8")
    for marker in ("ca-certificates.crt", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "debian.sources",
                   "trusted-host", "index-url", "tradingsystem-ci/"):
        assert marker not in text, marker


def test_builder_and_targets_exist(stages: dict[str, Stage]) -> None:
    assert {"builder", "api", "workspace", "dev"} <= set(stages)
    for target in ("api", "workspace", "dev"):
        names = [stage.name for stage in chain(stages, target)]
        assert "builder" not in names, f"{target} must not carry the build stage"
        copies = [c for stage in chain(stages, target) for c in stage.values("COPY")]
        assert any(c.startswith("--from=builder") and "/opt/venv" in c for c in copies), target


@pytest.mark.parametrize("target", ["api", "workspace", "dev"])
def test_targets_run_as_a_non_root_user(stages: dict[str, Stage], target: str) -> None:
    user = effective(stages, target, "USER")
    assert user is not None, f"{target} runs as root"
    name = user.split(":")[0]
    assert name not in {"root", "0"}, f"{target} runs as {user}"
    if name.isdigit():
        # A numeric uid must exist in the image, or file ownership inside it would be meaningless.
        runs = " ".join(run for stage in chain(stages, target) for run in stage.values("RUN"))
        assert f"--uid {name}" in runs


@pytest.mark.parametrize(("target", "port"), sorted(SERVICE_TARGETS.items()))
def test_service_targets_serve_their_port(stages: dict[str, Stage], target: str, port: int) -> None:
    assert effective(stages, target, "CMD") == json.dumps(["tradingsystem", "serve", target])
    exposed = {p for stage in chain(stages, target) for e in stage.values("EXPOSE") for p in e.split()}
    assert exposed == {str(port)}


@pytest.mark.parametrize(("target", "port"), sorted(SERVICE_TARGETS.items()))
def test_healthcheck_uses_python_not_curl(stages: dict[str, Stage], target: str, port: int) -> None:
    check = effective(stages, target, "HEALTHCHECK")
    assert check is not None
    assert "curl" not in check and "wget" not in check
    match = re.search(r"CMD\s+(\[.*\])\s*$", check)
    assert match, check
    argv = json.loads(match.group(1))
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    compile(code, "<healthcheck>", "exec")
    assert "urllib.request" in code and "/health" in code and f"'{port}'" in code


def test_dev_target_reloads_from_an_editable_install(stages: dict[str, Stage]) -> None:
    cmd = json.loads(effective(stages, "dev", "CMD") or "[]")
    assert cmd[:2] == ["tradingsystem", "serve"] and "--reload" in cmd
    runs = " ".join(stages["dev"].values("RUN"))
    # Editable, so that a source tree mounted over /app/src is what actually runs.
    assert "--editable /app" in runs
    assert effective(stages, "dev", "WORKDIR") == "/app"


def test_images_carry_labels(stages: dict[str, Stage]) -> None:
    for target in ("api", "workspace", "dev"):
        labels = " ".join(label for stage in chain(stages, target) for label in stage.values("LABEL"))
        for key in ("org.opencontainers.image.title", "org.opencontainers.image.description",
                    "org.opencontainers.image.version"):
            assert key in labels, f"{target} lacks {key}"


def test_no_secret_is_baked_into_an_image(stages: dict[str, Stage]) -> None:
    secret = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY|API_HASH|TELEGRAM|DATABASE_URL)", re.IGNORECASE)
    for stage in stages.values():
        for keyword, args in stage.instructions:
            if keyword in {"ENV", "ARG", "LABEL"}:
                assert not secret.search(args), f"{stage.name}: {keyword} {args}"
    copied = " ".join(c for stage in stages.values() for c in stage.values("COPY"))
    assert ".env" not in copied and ".session" not in copied


# ---------------------------------------------------------------------------- build context


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per .dockerignore line, with Docker's `*`, `?` and `**` meanings."""
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex += pattern[i : end + 1]
                i = end + 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((negated, re.compile(f"^{regex}$")))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker semantics: a path is out when it or a parent directory matches; the last rule wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negated, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".env.production",
        "var/gateway/failure-queue.jsonl",
        "var/gateway/.session/telegram-gateway.session",
        "telegram-gateway.session",
        "data/library.json",
        "src/tradingsystem/.session/x.session",
        ".venv/bin/python",
        ".git/HEAD",
        "src/tradingsystem/__pycache__/cli.cpython-312.pyc",
        ".mypy_cache/3.11/cache.db",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/content",
        "tests/unit/test_deploy_docker.py",
    ],
)
def test_dockerignore_keeps_secrets_state_and_caches_out(path: str) -> None:
    assert ignored(path, dockerignore_rules()), path


def test_build_context_has_what_the_builder_copies(stages: dict[str, Stage]) -> None:
    rules = dockerignore_rules()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    # The wheel build needs pyproject.toml, the readme it names and the package directory.
    package_roots = pyproject["tool"]["setuptools"]["packages"]["find"]["where"]
    needed = {"pyproject.toml", pyproject["project"]["readme"], *package_roots}
    copied: set[str] = set()
    for stage_name in ("builder", "dev"):
        for args in stages[stage_name].values("COPY"):
            if args.startswith("--from="):
                continue
            *sources, _destination = args.split()
            copied.update(sources)
    assert needed <= copied, f"builder misses {needed - copied}"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(source, rules), f"COPY {source}: excluded by .dockerignore"
    # Code, SQL migrations and bundled data files all reach the image; only build leftovers do not.
    for path in (ROOT / "src" / "tradingsystem").rglob("*"):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        assert not ignored(relative, rules), relative
