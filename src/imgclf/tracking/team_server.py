"""The team tracking server: `mlflow server` on PostgreSQL, checked before it starts.

Everything here is a pure function of its arguments except `check_reachable`, which opens one
connection to the database. The `imgclf server` command (stages/server.py) runs the checks and
then replaces itself with `mlflow server`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from imgclf.errors import ImgclfError
from imgclf.tracking.store import masked

# MLflow's basic-auth permissions; EDIT lets every signed-in teammate log runs and register
# models in the shared experiment, while only admins manage users and permissions.
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
# A dead or firewalled database host must fail the start in seconds.
CONNECT_TIMEOUT_SECONDS = 5


class ServerError(ImgclfError):
    """The team server cannot start as asked; the message names the fix."""


@dataclass(frozen=True)
class ServerSettings:
    """What `mlflow server` is started with."""

    store_uri: str
    artifacts: str
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 4
    auth: bool = False
    auth_store_uri: str | None = None
    default_permission: str = "EDIT"


def check_store_uri(uri: str, what: str = "store") -> None:
    """Accept a PostgreSQL SQLAlchemy URI with a database name; anything else names the fix."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    example = "postgresql://USER:PASSWORD@HOST:5432/mlflow"
    try:
        url = make_url(uri)
    except ArgumentError as error:
        raise ServerError(
            f"the {what} URI is not a database URI ({error}): use {example}"
        ) from None
    if url.get_backend_name() != "postgresql":
        hint = " (a one-person SQLite store: make ui)" if url.drivername == "sqlite" else ""
        raise ServerError(
            f"the team server keeps its {what} in PostgreSQL, got {url.drivername!r} in "
            f"{masked(uri)}: use {example}{hint}"
        )
    if not url.database:
        raise ServerError(f"the {what} URI {masked(uri)} names no database: use {example}")


def derive_auth_store_uri(store_uri: str) -> str:
    """The users database beside the tracking one: .../mlflow -> .../mlflow_auth."""
    from sqlalchemy.engine import make_url

    url = make_url(store_uri)
    return url.set(database=f"{url.database}_auth").render_as_string(hide_password=False)


def check_reachable(uri: str, what: str = "store") -> None:
    """Open one connection to the database, or raise an error that says how to fix it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    url = make_url(uri)
    try:
        engine = create_engine(
            url,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
            poolclass=NullPool,
        )
    except ModuleNotFoundError as error:
        raise ServerError(
            f"the PostgreSQL driver for {url.drivername!r} is not installed ({error}): "
            "install the locked environment (make install), which has psycopg2-binary"
        ) from None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        create = f"createdb -h {url.host or 'localhost'} -p {url.port or 5432}"
        if url.username:
            create += f" -U {url.username}"
        raise ServerError(
            f"cannot reach the {what} database {masked(uri)}: {reason}. Start PostgreSQL and "
            f"create the database ({create} {url.database}), or fix the URI"
        ) from None
    finally:
        engine.dispose()


def is_loopback(host: str) -> bool:
    """Whether binding to host keeps the server to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth_app_installed() -> None:
    """MLflow's basic-auth app needs Flask-WTF (the mlflow[auth] extra) for CSRF checks."""
    import importlib.util

    if importlib.util.find_spec("flask_wtf") is None:
        raise ServerError(
            "--auth needs MLflow's basic-auth app, which needs Flask-WTF: install the locked "
            "environment (make install), which has mlflow[auth]"
        )


def check_auth_secret(environ: Mapping[str, str]) -> None:
    """The basic-auth app signs its CSRF tokens with a key that must outlive a restart."""
    if not environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        raise ServerError(
            "--auth needs MLFLOW_FLASK_SERVER_SECRET_KEY (the key that signs the UI's CSRF "
            "tokens; keep it the same across restarts): export MLFLOW_FLASK_SERVER_SECRET_KEY="
            "$(python -c 'import secrets; print(secrets.token_hex(32))')"
        )


def check_exposure(host: str, auth: bool, allow_unauthenticated: bool) -> None:
    """Refuse to serve a team's runs beyond this machine to anyone who asks."""
    if is_loopback(host) or auth or allow_unauthenticated:
        return
    raise ServerError(
        f"--host {host} opens the server to the network without sign-in: add --auth "
        "(MLflow's basic-auth app; set MLFLOW_AUTH_ADMIN_PASSWORD for the first start), or "
        "--allow-unauthenticated when a proxy in front of it signs users in"
    )


def artifacts_destination(artifacts: str, cwd: Path) -> str:
    """Object-store URIs as given; a local folder made absolute, so the server's cwd is moot."""
    if "://" in artifacts:
        return artifacts
    return str((cwd / artifacts).resolve())


def auth_config_text(auth_store_uri: str, default_permission: str, admin_username: str) -> str:
    """The basic-auth app's ini file: where users live and what a signed-in user may do."""
    if default_permission not in PERMISSIONS:
        raise ServerError(
            f"unknown permission {default_permission!r}; valid: {', '.join(PERMISSIONS)}"
        )
    # configparser reads % as interpolation; a password may hold one.
    database_uri = auth_store_uri.replace("%", "%%")
    return (
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {admin_username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def server_command(settings: ServerSettings, python: str) -> list[str]:
    """`mlflow server` for these settings. The store URI travels in the environment (see
    `server_environment`), never on the command line, where `ps` would show its password."""
    command = [
        python, "-m", "mlflow", "server",
        "--host", settings.host,
        "--port", str(settings.port),
        "--workers", str(settings.workers),
        "--artifacts-destination", settings.artifacts,
    ]  # fmt: skip
    if settings.auth:
        command += ["--app-name", "basic-auth"]
    return command


def server_environment(settings: ServerSettings, auth_config_path: Path | None) -> dict[str, str]:
    """The variables `mlflow server` reads its stores from."""
    env = {"MLFLOW_BACKEND_STORE_URI": settings.store_uri}
    if auth_config_path is not None:
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config_path)
    return env
