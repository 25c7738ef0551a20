"""`classops cloud ...`: run the service and administer its database."""

import argparse
import json
import logging
import os
import ssl
import sys
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session

from cloud import crud, registry
from cloud.core.config import Settings
from cloud.core.db import create_db_engine, upgrade_database
from cloud.errors import AlreadyExists, CloudError
from cloud.models import ROLES
from cloud.tabular import read_table

logger = logging.getLogger(__name__)

NEW_PASSWORD_ENV = "CLASSOPS_CLOUD_NEW_PASSWORD"


# Command-line options and the settings they set.
_OPTION_SETTINGS = (
    ("database_url", "database_url"),
    ("host", "host"),
    ("port", "port"),
    ("certfile", "tls_certfile"),
    ("keyfile", "tls_keyfile"),
)


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        setting: getattr(args, option)
        for option, setting in _OPTION_SETTINGS
        if getattr(args, option, None) is not None
    }
    return Settings(**overrides)


def _session(args: argparse.Namespace) -> Session:
    """A session on a database migrated to the newest schema."""
    settings = _settings(args)
    engine = create_db_engine(settings.database_url, echo=settings.sql_echo)
    upgrade_database(engine)
    return Session(engine)


def _worker_log_config() -> dict:
    """Logging for worker processes as `classops` set it up in this one: they start from nothing."""
    root = logging.getLogger()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"level": logging.getLevelName(root.level), "handlers": ["stderr"]},
    }


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the API under uvicorn, in one process or in `--workers` processes sharing the port."""
    import uvicorn

    from cloud.main import create_app

    # uvicorn's own X-Forwarded-For handling stays off (proxy_headers=False): the client's address is the
    # app's to find, through Settings.trusted_proxies only.
    # Server processes, the workers started below too: see Settings.tune_gc.
    settings = _settings(args).model_copy(update={"tune_gc": True})
    workers = args.workers if args.workers is not None else 1
    if workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    tls = {}
    if settings.tls_certfile is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                settings.tls_certfile, settings.tls_keyfile
            )
        except (OSError, ssl.SSLError) as exc:
            print(f"error: cannot serve HTTPS with {settings.tls_certfile} and {settings.tls_keyfile}: {exc}",
                  file=sys.stderr)
            return 2
        tls = {"ssl_certfile": settings.tls_certfile, "ssl_keyfile": settings.tls_keyfile}
    if workers == 1:
        uvicorn.run(
            create_app(settings), host=settings.host, port=settings.port, log_config=None, proxy_headers=False, **tls
        )
        return 0
    # Workers are fresh processes that build their app from the environment, so the options given here
    # go there too.
    for option, setting in _OPTION_SETTINGS:
        if getattr(args, option, None) is not None:
            os.environ[f"CLASSOPS_CLOUD_{setting.upper()}"] = str(getattr(args, option))
    os.environ["CLASSOPS_CLOUD_TUNE_GC"] = "true"
    # Migrate once here: workers that all found an empty database would race to create the same tables.
    engine = create_db_engine(settings.database_url)
    try:
        upgrade_database(engine)
    finally:
        engine.dispose()
    uvicorn.run(
        "cloud.main:create_app",
        factory=True,
        workers=workers,
        host=settings.host,
        port=settings.port,
        log_config=_worker_log_config(),
        proxy_headers=False,
        **tls,
    )
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


def cmd_add_city(args: argparse.Namespace) -> int:
    """Register a city; an existing one is left as it is."""
    with _session(args) as session:
        try:
            registry.create_city(session, actor=crud.Actor.cli(), code=args.code, name=args.name)
        except AlreadyExists:
            print(f"city {args.code} already exists")
            return 0
    print(f"city {args.code} added")
    return 0


def cmd_add_district(args: argparse.Namespace) -> int:
    """Register a county or district of a city; an existing one is left as it is."""
    with _session(args) as session:
        try:
            registry.create_district(
                session, actor=crud.Actor.cli(), code=args.code, city_code=args.city, name=args.name
            )
        except AlreadyExists:
            print(f"district {args.code} already exists")
            return 0
    print(f"district {args.code} added")
    return 0


def cmd_add_school(args: argparse.Namespace) -> int:
    """Register a school; an existing one is left as it is."""
    with _session(args) as session:
        try:
            school = registry.create_school(
                session,
                actor=crud.Actor.cli(),
                code=args.code,
                name=args.name,
                timezone=args.timezone,
                district_code=args.district,
            )
        except AlreadyExists:
            print(f"school {args.code} already exists")
            return 0
    print(f"school {school.code} added")
    return 0


def cmd_add_gateway(args: argparse.Namespace) -> int:
    """Register a gateway and print its id and token as JSON: the one time the token is shown."""
    with _session(args) as session:
        gateway, token = registry.create_gateway(
            session, actor=crud.Actor.cli(), school_code=args.school, name=args.name
        )
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
            session,
            actor=crud.Actor.cli(),
            username=args.username,
            password=password,
            role=args.role,
            school_code=args.school,
            district_code=args.district,
        )
    print(f"user {user.username} added with role {user.role}")
    return 0


def cmd_import_assets(args: argparse.Namespace) -> int:
    """Import devices from a CSV or XLSX file; print the report; exit 1 if any row was refused."""
    settings = _settings(args)
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if len(data) > settings.max_import_bytes:
        print(f"error: {path} is larger than {settings.max_import_bytes} bytes; split it", file=sys.stderr)
        return 2
    table = read_table(data, max_rows=settings.max_import_rows)
    with _session(args) as session:
        report = registry.import_devices(
            session,
            actor=crud.Actor.cli(),
            table=table,
            dry_run=args.dry_run,
            create_rooms=args.create_rooms,
        )
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        for problem in report.errors:
            column = f", {problem.column}" if problem.column else ""
            print(f"row {problem.row}{column}: {problem.message}")
        verb = "would be" if report.dry_run else "were"
        print(
            f"{report.rows} rows: {report.created} devices {verb} created, {report.updated} updated, "
            f"{len(report.errors)} problems"
        )
    return 1 if report.errors else 0


def cmd_maintenance(args: argparse.Namespace) -> int:
    """Roll up health history by the hour and delete what is past its retention."""
    settings = _settings(args)
    with _session(args) as session:
        report = crud.run_maintenance(
            session,
            actor=crud.Actor.cli(),
            sample_retention=timedelta(days=settings.sample_retention_days),
            rollup_retention=timedelta(days=settings.rollup_retention_days),
        )
    if report is None:
        print("another process is running maintenance; nothing done")
        return 0
    print(json.dumps(report.model_dump()))
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
    """Add the cloud's commands (serve, migrate, the registry's add-*, import-assets, maintenance)."""
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--database-url", help="SQLAlchemy URL (default: CLASSOPS_CLOUD_DATABASE_URL)")

    serve = commands.add_parser("serve", parents=[database], help="run the API")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--certfile", help="serve HTTPS with this PEM certificate chain (with --keyfile)")
    serve.add_argument("--keyfile", help="the PEM private key of --certfile")
    serve.add_argument(
        "--workers",
        type=int,
        help="API worker processes (default 1); each keeps its own per-gateway sync rate limit",
    )
    serve.set_defaults(func=_handled(cmd_serve))

    migrate = commands.add_parser("migrate", parents=[database], help="bring the schema up to date")
    migrate.set_defaults(func=_handled(cmd_migrate))

    city = commands.add_parser("add-city", parents=[database], help="register a city")
    city.add_argument("--code", required=True, help="the city's code")
    city.add_argument("--name", required=True, help="the city's name")
    city.set_defaults(func=_handled(cmd_add_city))

    district = commands.add_parser("add-district", parents=[database], help="register a county or district")
    district.add_argument("--code", required=True, help="the district's code")
    district.add_argument("--city", required=True, help="the code of its city")
    district.add_argument("--name", required=True, help="the district's name")
    district.set_defaults(func=_handled(cmd_add_district))

    school = commands.add_parser("add-school", parents=[database], help="register a school")
    school.add_argument("--code", required=True, help="the school's code")
    school.add_argument("--name", required=True, help="the school's name")
    school.add_argument("--timezone", default="Asia/Shanghai", help="IANA zone (default Asia/Shanghai)")
    school.add_argument("--district", help="the code of the school's county or district")
    school.set_defaults(func=_handled(cmd_add_school))

    gateway = commands.add_parser("add-gateway", parents=[database], help="register a gateway; prints its token once")
    gateway.add_argument("--school", required=True, help="the code of the gateway's school")
    gateway.add_argument("--name", help="a name for people")
    gateway.set_defaults(func=_handled(cmd_add_gateway))

    user = commands.add_parser("add-user", parents=[database], help="register a person who signs in")
    user.add_argument("--username", required=True)
    user.add_argument("--password", help=f"default: the environment variable {NEW_PASSWORD_ENV}")
    user.add_argument("--role", required=True, choices=ROLES)
    user.add_argument("--school", help="the school of a school_admin")
    user.add_argument("--district", help="the district of a county_admin or auditor (none: every school of the city)")
    user.set_defaults(func=_handled(cmd_add_user))

    assets = commands.add_parser(
        "import-assets",
        parents=[database],
        help="import devices from a CSV or XLSX file",
        description="Register or update a device per row. Columns: device_id and school (required); "
        "building and classroom (names), model, vendor, serial, asset_tag, purchase_date, warranty_end, "
        "firmware, role. Rows with errors are skipped and listed; the exit status is 1 if there were any.",
    )
    assets.add_argument("file", help="the .csv or .xlsx file")
    assets.add_argument("--dry-run", action="store_true", help="check every row and change nothing")
    assets.add_argument("--create-rooms", action="store_true", help="create missing buildings and classrooms")
    assets.add_argument("--json", action="store_true", help="print the report as JSON")
    assets.set_defaults(func=_handled(cmd_import_assets))

    maintenance = commands.add_parser(
        "maintenance", parents=[database], help="roll up health history and prune what is past retention"
    )
    maintenance.set_defaults(func=_handled(cmd_maintenance))


def register(parts) -> None:
    """Add the `cloud` part to the root `classops` command."""
    cloud = parts.add_parser("cloud", help="the cloud service", description="The ClassOps cloud service.")
    add_commands(cloud.add_subparsers(dest="cloud_command", required=True, metavar="COMMAND"))
