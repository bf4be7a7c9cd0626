"""`imgclf server`: what it refuses, and the `mlflow server` it would start (no server runs).

The end-to-end test on a real PostgreSQL is tests/e2e/test_team_server.py.
"""

from __future__ import annotations

import configparser
import time
from pathlib import Path

import pytest

from imgclf.stages import server as server_command
from imgclf.tracking import team_server
from imgclf.tracking.store import masked
from imgclf.tracking.team_server import ServerError, ServerSettings
from support.mlflow_server import free_port

STORE = "postgresql://mlflow:pa%25ss@db.internal:5432/mlflow"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:///mlruns/mlflow.db", "make ui"),
        ("mysql://u@h/mlflow", "keeps its store in PostgreSQL"),
        ("postgresql://u@h:5432", "names no database"),
        ("not a uri", "not a database URI"),
    ],
)
def test_store_must_be_a_postgres_database(uri: str, expected: str) -> None:
    with pytest.raises(ServerError, match=expected):
        team_server.check_store_uri(uri)


def test_postgres_uris_with_or_without_a_driver_pass() -> None:
    team_server.check_store_uri(STORE)
    team_server.check_store_uri("postgresql+psycopg://u@127.0.0.1:5433/mlflow")


def test_messages_mask_the_password() -> None:
    assert masked(STORE) == "postgresql://mlflow:***@db.internal:5432/mlflow"
    with pytest.raises(ServerError) as refused:
        team_server.check_store_uri(STORE.replace("postgresql", "sqlite"))
    assert "pa%25ss" not in str(refused.value)


def test_users_live_in_a_sibling_database() -> None:
    assert team_server.derive_auth_store_uri(STORE) == (
        "postgresql://mlflow:pa%25ss@db.internal:5432/mlflow_auth"
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_sign_in(host: str) -> None:
    team_server.check_exposure(host, auth=False, allow_unauthenticated=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "mlflow.team.internal"])
def test_network_exposure_needs_auth_or_an_explicit_waiver(host: str) -> None:
    with pytest.raises(ServerError, match="--auth"):
        team_server.check_exposure(host, auth=False, allow_unauthenticated=False)
    team_server.check_exposure(host, auth=True, allow_unauthenticated=False)
    team_server.check_exposure(host, auth=False, allow_unauthenticated=True)


def test_auth_needs_a_lasting_secret_key() -> None:
    with pytest.raises(ServerError, match="MLFLOW_FLASK_SERVER_SECRET_KEY"):
        team_server.check_auth_secret({})
    team_server.check_auth_secret({"MLFLOW_FLASK_SERVER_SECRET_KEY": "k"})


def test_local_artifacts_become_absolute_and_object_stores_stay(tmp_path: Path) -> None:
    assert team_server.artifacts_destination("mlartifacts", tmp_path) == str(
        tmp_path / "mlartifacts"
    )
    assert team_server.artifacts_destination("s3://bucket/mlflow", tmp_path) == "s3://bucket/mlflow"


def test_auth_config_reads_back_as_written() -> None:
    text = team_server.auth_config_text(team_server.derive_auth_store_uri(STORE), "EDIT", "admin")
    config = configparser.ConfigParser()
    config.read_string(text)
    assert config["mlflow"]["database_uri"].endswith("pa%25ss@db.internal:5432/mlflow_auth")
    assert config["mlflow"]["default_permission"] == "EDIT"
    with pytest.raises(ServerError, match="valid: READ, EDIT"):
        team_server.auth_config_text(STORE, "WRITE", "admin")


def test_store_uri_travels_in_the_environment_not_the_command_line(tmp_path: Path) -> None:
    settings = ServerSettings(store_uri=STORE, artifacts="/srv/artifacts", auth=True)
    command = team_server.server_command(settings, "python")
    assert "pa%25ss" not in " ".join(command) and "postgresql" not in " ".join(command)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[-2:] == ["--app-name", "basic-auth"]
    assert "--app-name" not in team_server.server_command(
        ServerSettings(store_uri=STORE, artifacts="/srv/artifacts"), "python"
    )
    env = team_server.server_environment(settings, tmp_path / "auth.ini")
    assert env == {
        "MLFLOW_BACKEND_STORE_URI": STORE,
        "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth.ini"),
    }


def test_command_without_a_store_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI", raising=False)
    assert server_command.main([]) == 2
    assert "MLFLOW_BACKEND_STORE_URI" in capsys.readouterr().err


def test_command_fails_fast_on_an_unreachable_database(capsys: pytest.CaptureFixture) -> None:
    store = f"postgresql://mlflow:secret-pw@127.0.0.1:{free_port()}/mlflow"
    started = time.monotonic()
    assert server_command.main(["--store", store]) == 2
    assert time.monotonic() - started < 30
    error = capsys.readouterr().err
    assert "cannot reach the store database" in error and "createdb" in error
    assert "secret-pw" not in error


def test_command_checks_exposure_before_touching_the_database(
    capsys: pytest.CaptureFixture,
) -> None:
    # Port 1 would fail too, but later: the exposure check answers first.
    store = "postgresql://mlflow@127.0.0.1:1/mlflow"
    assert server_command.main(["--store", store, "--host", "0.0.0.0"]) == 2
    assert "--allow-unauthenticated" in capsys.readouterr().err
