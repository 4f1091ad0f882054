"""docker-compose.yml and the Dockerfile agree with the code they run.

No Docker engine runs on the CI machines, so `docker compose config` cannot be used here; these
tests check what would break a deployment: every service command is a real `ls-panoptic`
subcommand with real options, the environment the services get is accepted by `Settings`, and
the image installs every package the code imports.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from cli.main import cli
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} against ``env``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose requires {name}: {arg}")
        return arg

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(:-|:\?)?([^}]*)\}", one, value)


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


def test_service_environment_is_accepted_by_settings(compose: dict[str, Any]) -> None:
    given = {"LABEL_STUDIO_API_KEY": "k" * 40, "WEBHOOK_TOKEN": "w" * 40, "API_TOKEN": "a" * 40}
    env = {k: _interpolate(str(v), given) for k, v in compose["x-service-env"].items()}
    settings = Settings.from_env(env)
    settings.require_tokens()
    settings.require_label_studio()
    assert settings.redis_url == "redis://redis:6379/0"


def test_missing_tokens_stop_compose_with_a_message(compose: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match="WEBHOOK_TOKEN"):
        _interpolate(str(compose["x-service-env"]["WEBHOOK_TOKEN"]), {})


def test_dockerfile_default_command_is_serve_with_real_options() -> None:
    text = (REPO / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    args = yaml.safe_load(cmd.group(1))
    result = CliRunner().invoke(cli, [args[0], "--help"])
    assert result.exit_code == 0
    assert all(a in result.output for a in args if a.startswith("--"))
    for package in ("ls_panoptic", "worker", "backend", "cli"):
        assert f"COPY {package} {package}" in text


def test_dashboard_uses_auth_and_the_json_serializer(compose: dict[str, Any]) -> None:
    dashboard = compose["services"]["rq-dashboard"]
    assert "--json" in dashboard["command"]
    assert dashboard["environment"]["RQ_DASHBOARD_PASSWORD"].startswith("${API_TOKEN")
    assert "password" not in shlex.join(dashboard["command"]).lower()


def _third_party_imports() -> set[str]:
    import ast
    import sys

    local = {"ls_panoptic", "worker", "backend", "cli"}
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
