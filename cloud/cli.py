"""`classops cloud ...`: run the service and administer its database."""

import argparse
import json
import logging
import os
import sys

from sqlmodel import Session

from cloud import crud
from cloud.core.config import Settings
from cloud.core.db import create_db_engine, upgrade_database
from cloud.errors import AlreadyExists, CloudError
from cloud.models import ROLES

logger = logging.getLogger(__name__)

NEW_PASSWORD_ENV = "CLASSOPS_CLOUD_NEW_PASSWORD"


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name)
        for name in ("database_url", "host", "port")
        if getattr(args, name, None) is not None
    }
    return Settings(**overrides)


def _session(args: argparse.Namespace) -> Session:
    """A session on a database migrated to the newest schema."""
    settings = _settings(args)
    engine = create_db_engine(settings.database_url, echo=settings.sql_echo)
    upgrade_database(engine)
    return Session(engine)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the API under uvicorn."""
    import uvicorn

    from cloud.main import create_app

    settings = _settings(args)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the database schema up to date."""
    settings = _settings(args)
    engine = create_db_engine(settings.database_url)
    try:
        upgrade_database(engine)
    finally:
        engine.dispose()
    print("database schema is up to date")
    return 0


def cmd_add_school(args: argparse.Namespace) -> int:
    """Register a school; an existing one is left as it is."""
    with _session(args) as session:
        try:
            school = crud.create_school(session, code=args.code, name=args.name, timezone=args.timezone)
        except AlreadyExists:
            print(f"school {args.code} already exists")
            return 0
    print(f"school {school.code} added")
    return 0


def cmd_add_gateway(args: argparse.Namespace) -> int:
    """Register a gateway and print its id and token as JSON: the one time the token is shown."""
    with _session(args) as session:
        gateway, token = crud.create_gateway(session, school_code=args.school, name=args.name)
    print(json.dumps({"gateway_id": gateway.id, "token": token}))
    return 0


def cmd_add_user(args: argparse.Namespace) -> int:
    """Register a person who signs in."""
    password = args.password if args.password is not None else os.environ.get(NEW_PASSWORD_ENV)
    if not password:
        print(f"error: give --password or set {NEW_PASSWORD_ENV}", file=sys.stderr)
        return 2
    with _session(args) as session:
        user = crud.create_user(
            session, username=args.username, password=password, role=args.role, school_code=args.school
        )
    print(f"user {user.username} added with role {user.role}")
    return 0


def _handled(command):
    """Turn the data layer's errors into a message and exit status 1 instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CloudError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    run.__doc__ = command.__doc__
    return run


def add_commands(commands) -> None:
    """Add serve, migrate, add-school, add-gateway and add-user to an argparse subparsers object."""
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--database-url", help="SQLAlchemy URL (default: CLASSOPS_CLOUD_DATABASE_URL)")

    serve = commands.add_parser("serve", parents=[database], help="run the API")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.set_defaults(func=_handled(cmd_serve))

    migrate = commands.add_parser("migrate", parents=[database], help="bring the schema up to date")
    migrate.set_defaults(func=_handled(cmd_migrate))

    school = commands.add_parser("add-school", parents=[database], help="register a school")
    school.add_argument("--code", required=True, help="the school's code")
    school.add_argument("--name", required=True, help="the school's name")
    school.add_argument("--timezone", default="Asia/Shanghai", help="IANA zone (default Asia/Shanghai)")
    school.set_defaults(func=_handled(cmd_add_school))

    gateway = commands.add_parser(
        "add-gateway", parents=[database], help="register a gateway; prints its token once"
    )
    gateway.add_argument("--school", required=True, help="the code of the gateway's school")
    gateway.add_argument("--name", help="a name for people")
    gateway.set_defaults(func=_handled(cmd_add_gateway))

    user = commands.add_parser("add-user", parents=[database], help="register a person who signs in")
    user.add_argument("--username", required=True)
    user.add_argument("--password", help=f"default: the environment variable {NEW_PASSWORD_ENV}")
    user.add_argument("--role", required=True, choices=ROLES)
    user.add_argument("--school", help="the school of a school_admin")
    user.set_defaults(func=_handled(cmd_add_user))


def register(parts) -> None:
    """Add the `cloud` part to the root `classops` command."""
    cloud = parts.add_parser("cloud", help="the cloud service", description="The ClassOps cloud service.")
    add_commands(cloud.add_subparsers(dest="cloud_command", required=True, metavar="COMMAND"))
