"""The Edgewise operator CLI: ``python -m cli <command>`` from the repository root.

Every command prints one JSON object on stdout. Exit status: 0 success; 1 a failed
check or operation (with a message on stderr); 2 a usage error or a refusal (a
missing ``--db``, ``rebuild-read-model`` or ``tables delete`` without ``--yes``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from infrastructure.config import (
    DEFAULT_COMMAND_ADDR,
    DEFAULT_DYNAMODB_REGION,
    DEFAULT_DYNAMODB_TABLE_PREFIX,
    DEFAULT_QUERY_ADDR,
    DEFAULT_JWT_AUDIENCE,
    DEFAULT_JWT_ISSUER,
    DEV_DB_PATH,
)
from infrastructure.security.principal import SCOPES

from cli.mint import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS
from cli.sqlite_files import CliError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_HEALTH_TIMEOUT = 2.0
DEFAULT_TABLES_TIMEOUT = 300.0

REBUILD_HELP = """\
Empty every rm_* table and reset the 'read_model' projector checkpoint to 0 in one
transaction; the next query-service start re-projects the whole event log.
STOP THE QUERY SERVICE FIRST: a running query service keeps its projected position
in memory and would serve reads from the emptied tables. The command service may
keep running. Requires --yes."""


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cli", description="Edgewise operator CLI. Every command prints one JSON object.",
        epilog=f"Settings it reads (as the services do; a flag overrides each): EDGEWISE_DB_PATH (status, "
               f"rebuild-read-model; else {DEV_DB_PATH}), EDGEWISE_COMMAND_ADDR and EDGEWISE_QUERY_ADDRS or "
               f"EDGEWISE_QUERY_ADDR (health; else {DEFAULT_COMMAND_ADDR}, {DEFAULT_QUERY_ADDR}), "
               f"EDGEWISE_DYNAMODB_ENDPOINT, _REGION, _TABLE_PREFIX (tables), "
               f"EDGEWISE_JWT_HS256_SECRETS, _ISSUER, _AUDIENCE (token mint). `python -m cli COMMAND --help` "
               f"for each command.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    db_help = f"the SQLite data file (default: $EDGEWISE_DB_PATH, else {DEV_DB_PATH}, the file make run uses)"
    default_db = os.environ.get("EDGEWISE_DB_PATH") or DEV_DB_PATH

    status = sub.add_parser("status", help="event log head, projection lag, background work, per-graph counts",
                            description="Read-only summary of the data file: event-log head, 'read_model' "
                                        "checkpoint and lag, pending cascade jobs, idempotency records, and per "
                                        "graph the schema version, live nodes and edges (write model, and the "
                                        "read model under 'read_model'). Safe while the services run.")
    status.add_argument("--db", default=default_db, help=db_help)

    health = sub.add_parser("health", help="gRPC health of both services",
                            description="grpc.health.v1 Check for '' and the service name on each address "
                                        "(every query worker's); exit 1 unless every check answers SERVING.")
    health.add_argument("--command-addr",
                        default=os.environ.get("EDGEWISE_COMMAND_ADDR") or DEFAULT_COMMAND_ADDR,
                        help="command service host:port (default: $EDGEWISE_COMMAND_ADDR or %(default)s)")
    health.add_argument("--query-addr", default=(os.environ.get("EDGEWISE_QUERY_ADDRS")
                                                 or os.environ.get("EDGEWISE_QUERY_ADDR") or DEFAULT_QUERY_ADDR),
                        help="the query workers' host:port, comma-separated (default: $EDGEWISE_QUERY_ADDRS, "
                             "else $EDGEWISE_QUERY_ADDR, else %(default)s)")
    health.add_argument("--only", choices=("command", "query"), help="check one service only")
    health.add_argument("--timeout", type=_positive, default=DEFAULT_HEALTH_TIMEOUT,
                        help="seconds per check (default: %(default)s)")

    rebuild = sub.add_parser("rebuild-read-model", help="reset the read model (query service stopped!)",
                             description=REBUILD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    rebuild.add_argument("--db", default=default_db, help=db_help)
    rebuild.add_argument("--yes", action="store_true",
                         help="confirm that the query service is stopped and the read model may be emptied")

    tables = sub.add_parser("tables", help="create, check or delete the DynamoDB tables",
                            description="Edgewise's DynamoDB tables (deploy/dynamodb/tables.py): {prefix}write, "
                                        "{prefix}log, {prefix}read. Credentials come from the AWS default chain.")
    actions = tables.add_subparsers(dest="tables_action", required=True, metavar="ACTION")
    for action, help_text in (
            ("create", "create the missing tables (existing ones are left alone), enable TTL, wait until ACTIVE"),
            ("check", "the services' start-up check: every table exists, is ACTIVE and has its indexes"),
            ("delete", "delete the tables and wait until they are gone (tests, development; needs --yes)")):
        parser_ = actions.add_parser(action, help=help_text, description=help_text)
        parser_.add_argument("--endpoint", default=os.environ.get("EDGEWISE_DYNAMODB_ENDPOINT", ""),
                             help="DynamoDB endpoint URL; empty = the AWS default endpoint of the region "
                                  "(default: $EDGEWISE_DYNAMODB_ENDPOINT)")
        parser_.add_argument("--region", default=os.environ.get("EDGEWISE_DYNAMODB_REGION") or DEFAULT_DYNAMODB_REGION,
                             help="AWS region (default: $EDGEWISE_DYNAMODB_REGION or %(default)s)")
        parser_.add_argument("--prefix",
                             default=os.environ.get("EDGEWISE_DYNAMODB_TABLE_PREFIX") or DEFAULT_DYNAMODB_TABLE_PREFIX,
                             help="table name prefix (default: $EDGEWISE_DYNAMODB_TABLE_PREFIX or %(default)s)")
        if action != "check":
            parser_.add_argument("--timeout", type=_positive, default=DEFAULT_TABLES_TIMEOUT,
                                 help="seconds to wait for the tables (default: %(default)s)")
        if action == "delete":
            parser_.add_argument("--yes", action="store_true", help="confirm: every item in the tables is lost")

    token = sub.add_parser("token", help="mint a bearer token (JWT) for a principal",
                           description="Bearer tokens for the services' authentication (EDGEWISE_AUTH_MODE=jwt).")
    token_actions = token.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    mint = token_actions.add_parser(
        "mint", help="mint a token for a subject, its graphs and scopes",
        description="Mint a JWT signed with an HS256 secret of $EDGEWISE_JWT_HS256_SECRETS (the services' setting), "
                    "or with --private-key (RS256 for an RSA key, ES256 for a P-256 key). Prints one JSON object "
                    "(the token, its subject, graphs, scopes, key id, algorithm and expiry; never the secret), or "
                    "with --raw the token alone: grpcurl -H \"authorization: Bearer $(python -m cli token mint "
                    "... --raw)\". Exit 2 when no key is configured.")
    mint.add_argument("--subject", required=True, help="the principal ('sub' claim)")
    mint.add_argument("--graph", action="append", default=[], dest="graphs", metavar="GRAPH",
                      help="a graph it may use: a name, a prefix ending in '*' (team-a-*) or '*'; repeatable")
    mint.add_argument("--scope", action="append", default=[], dest="scopes", choices=SCOPES,
                      help="a scope it holds; repeatable")
    mint.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS,
                      help=f"seconds it is valid for, from now or --not-before (default: %(default)s; "
                           f"at most {MAX_TTL_SECONDS})")
    mint.add_argument("--not-before", help="valid from: seconds since the epoch or an ISO 8601 time (default: now)")
    mint.add_argument("--key-id", help="HS256: a key id of $EDGEWISE_JWT_HS256_SECRETS (default: the first); "
                                       "with --private-key: the id the services know its public key by (required)")
    mint.add_argument("--private-key", metavar="FILE", help="a PEM private key (RSA: RS256, EC P-256: ES256)")
    mint.add_argument("--issuer", help="the 'iss' claim (default: $EDGEWISE_JWT_ISSUER, else "
                                       f"{DEFAULT_JWT_ISSUER})")
    mint.add_argument("--audience", help="the 'aud' claim (default: $EDGEWISE_JWT_AUDIENCE, else "
                                         f"{DEFAULT_JWT_AUDIENCE})")
    mint.add_argument("--raw", action="store_true", help="print only the token")
    return parser


def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "status":
        from cli.status import status
        return status(args.db)
    if args.command == "health":
        from cli.health import health
        addresses = {"command": [args.command_addr],
                     "query": [a.strip() for a in args.query_addr.split(",") if a.strip()]}
        if args.only:
            addresses = {args.only: addresses[args.only]}
        result = health(addresses, args.timeout)
        if not result["ok"]:
            failing = [f"{c['target']} {c['address']} service {c['service'] or repr('')}: {c['status']}"
                       + (f" ({c['error']})" if "error" in c else "") for c in result["checks"]
                       if c["status"] != "SERVING"]
            raise CliError("not healthy:\n  " + "\n  ".join(failing), result=result)
        return result
    if args.command == "rebuild-read-model":
        if not args.yes:
            raise CliError("refusing to rebuild the read model without --yes. Stop the query service first "
                           "(a running one would serve reads from the emptied tables), then run again with "
                           "--yes; it re-projects the whole event log when it starts.", exit_code=EXIT_USAGE)
        from cli.rebuild import rebuild_read_model
        return rebuild_read_model(args.db)
    if args.command == "tables":
        if args.tables_action == "delete" and not args.yes:
            raise CliError("refusing to delete the tables without --yes: every item in them is lost",
                           exit_code=EXIT_USAGE)
        from cli.tables import settings_from_args, tables
        settings = settings_from_args(args.endpoint, args.region, args.prefix)
        return tables(args.tables_action, settings, timeout=getattr(args, "timeout", DEFAULT_TABLES_TIMEOUT))
    if args.command == "token":
        from cli.mint import mint
        return mint(subject=args.subject, graphs=args.graphs, scopes=args.scopes, ttl=args.ttl,
                    not_before=args.not_before, key_id=args.key_id, private_key=args.private_key,
                    issuer=args.issuer, audience=args.audience)
    raise CliError(f"unknown command {args.command!r}", exit_code=EXIT_USAGE)


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, sort_keys=True), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed it
        return int(exc.code or 0)
    try:
        result = _run(args)
    except CliError as exc:
        _emit(exc.result if exc.result is not None else {"ok": False, "error": str(exc)})
        print(f"edgewise {args.command}: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    if getattr(args, "raw", False):
        print(result["token"], flush=True)
    else:
        _emit(result)
    return EXIT_OK
