"""server (run by hand, not by DVC): the team's MLflow tracking server on PostgreSQL.

Checks the store (and, with --auth, the users database) before anything starts, then replaces
itself with `mlflow server`. Loopback by default; any other --host needs --auth.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from imgclf.stages.common import EXIT_BAD_INPUT
from imgclf.tracking.team_server import PERMISSIONS, ServerError, ServerSettings


def _add_database_option(
    parser: argparse.ArgumentParser, option: str, variable: str, meaning: str
) -> None:
    """An option whose default is the environment variable that holds the URI."""
    parser.add_argument(option, default=os.environ.get(variable), help=meaning)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgclf server",
        description="Start the team's MLflow tracking server on PostgreSQL "
        "(docs/guide/scaling.md).",
    )
    _add_storage_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=5000, help="(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=4, help="(default: %(default)s)")
    _add_auth_options(parser)
    return parser


def _add_storage_options(parser: argparse.ArgumentParser) -> None:
    """Where the server keeps runs (PostgreSQL) and artifacts."""
    # Database URIs hold passwords: their defaults come from variables, out of `ps`.
    _add_database_option(
        parser,
        "--store",
        "MLFLOW_BACKEND_STORE_URI",
        "PostgreSQL URI of the tracking store, postgresql://USER:PASSWORD@HOST:5432/mlflow "
        "(default: $MLFLOW_BACKEND_STORE_URI; the variable keeps the password out of `ps`)",
    )
    parser.add_argument(
        "--artifacts",
        default="mlartifacts",
        help="where the server keeps artifacts: a folder, s3://..., gs://... "
        "(default: %(default)s)",
    )


def _add_auth_options(parser: argparse.ArgumentParser) -> None:
    """Who may use the server: MLflow's basic-auth app, its users database and permissions."""
    parser.add_argument(
        "--auth", action="store_true", help="MLflow's basic-auth app: every request signs in"
    )
    _add_database_option(
        parser,
        "--auth-store",
        "IMGCLF_AUTH_STORE_URI",
        "PostgreSQL URI of the users database (default: $IMGCLF_AUTH_STORE_URI, else the "
        "store's database name + _auth on the same server)",
    )
    parser.add_argument(
        "--default-permission",
        choices=PERMISSIONS,
        default="EDIT",
        help="what a signed-in user may do with others' experiments and models "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="allow a non-loopback --host without --auth (a proxy in front signs users in)",
    )


def settings_from(args: argparse.Namespace, cwd: Path) -> ServerSettings:
    """Validate the arguments and reach the databases; raise ServerError naming the fix."""
    from imgclf.tracking import team_server

    if not args.store:
        raise ServerError(
            "no tracking store: set MLFLOW_BACKEND_STORE_URI (or --store) to "
            "postgresql://USER:PASSWORD@HOST:5432/mlflow"
        )
    team_server.check_exposure(args.host, args.auth, args.allow_unauthenticated)
    team_server.check_store_uri(args.store)
    auth_store = None
    if args.auth:
        team_server.check_auth_app_installed()
        team_server.check_auth_secret(os.environ)
        auth_store = args.auth_store or team_server.derive_auth_store_uri(args.store)
        team_server.check_store_uri(auth_store, "users")
    team_server.check_reachable(args.store)
    if auth_store is not None:
        team_server.check_reachable(auth_store, "users")
    return ServerSettings(
        store_uri=args.store,
        artifacts=team_server.artifacts_destination(args.artifacts, cwd),
        host=args.host,
        port=args.port,
        workers=args.workers,
        auth=args.auth,
        auth_store_uri=auth_store,
        default_permission=args.default_permission,
    )


def write_auth_config(settings: ServerSettings) -> Path:
    """The basic-auth ini, readable by this user only (it holds the users database URI)."""
    from imgclf.tracking import team_server

    text = team_server.auth_config_text(
        settings.auth_store_uri,
        settings.default_permission,
        os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin",
    )
    handle, name = tempfile.mkstemp(prefix="imgclf-basic-auth-", suffix=".ini")
    with os.fdopen(handle, "w", encoding="utf-8") as config:  # mkstemp makes it mode 0600
        config.write(text)
    return Path(name)


def main(argv: Sequence[str] | None = None) -> int:
    from imgclf.tracking import team_server

    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args, Path.cwd())
    except ServerError as error:
        print(f"error (imgclf server): {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    auth_config = write_auth_config(settings) if settings.auth else None
    command = team_server.server_command(settings, sys.executable)
    os.environ.update(team_server.server_environment(settings, auth_config))
    where = "with sign-in (basic-auth)" if settings.auth else "without sign-in"
    print(
        f"imgclf server: http://{settings.host}:{settings.port} {where}; store "
        f"{team_server.masked(settings.store_uri)}; artifacts {settings.artifacts}",
        flush=True,
    )
    os.execv(sys.executable, command)
    return 0  # not reached: exec replaces this process
