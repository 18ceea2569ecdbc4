"""`cohortshare`: the command line for data engineers, analysts and IG officers.

User errors are printed as one line, `ClassName: message`, with the class's exit code and no
traceback. Unexpected errors are reported by type only: library messages can quote the data
values that caused them, and a traceback is no place for a resident's details.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from flows import (
    anonymise_command,
    audit_command,
    contracts_command,
    deliveries_command,
    keys_command,
)
from schemas.errors import CohortShareError, UserError

# The prevention question: where are residents with two or more vulnerability indicators?
EXAMPLE_QUERY = (
    "SELECT ward, CAST(sum(people) AS BIGINT) AS people "
    "FROM cohort_prevention_two_plus_indicators WHERE NOT withheld "
    "GROUP BY ward ORDER BY people DESC LIMIT 8"
)
UNEXPECTED_EXIT = 70
# EX_TEMPFAIL: Prefect's temporary server did not start; trying again later may work.
PREFECT_STARTUP_EXIT = 75
# Prefect's temporary (ephemeral) server must start within this many seconds. Its default, 20,
# is too short on a loaded machine: the first run in a fresh home failed with a bare
# RuntimeError while the server was still migrating its database.
EPHEMERAL_STARTUP_SECONDS = "120"
PREFECT_STARTUP_FAILURE = "Timed out while attempting to connect to ephemeral Prefect API server"


def _quiet_third_parties() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_SECONDS
    )


def _default_root() -> Path:
    return Path(os.environ.get("COHORTSHARE_ROOT", "data"))


def _add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=_default_root(),
        help="data root (default: $COHORTSHARE_ROOT or ./data)",
    )


def _add_contracts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--contracts",
        type=Path,
        default=Path("data_contracts"),
        help="folder of data contracts, hierarchies and policy (default: %(default)s)",
    )


def _add_council(parser: argparse.ArgumentParser) -> None:
    """Options of the synthetic council, shared by `generate` and `demo`."""
    parser.add_argument(
        "--residents", type=int, default=100_000, help="residents (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=2026, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--noise",
        type=float,
        default=0.02,
        help="share of identifiers with realistic errors (default: %(default)s)",
    )
    parser.add_argument(
        "--invalid",
        type=float,
        default=0.002,
        help="share of rows that break their contract, for the quarantine to catch "
        "(default: %(default)s)",
    )


def cmd_generate(args: argparse.Namespace) -> int:
    from transforms.synthetic import generate_council

    if args.residents < 1:
        raise UserError("--residents must be at least 1")
    print(
        f"Generating a synthetic council of {args.residents:,} residents (seed {args.seed}) ...",
        file=sys.stderr,
    )
    # Dated today, so the extracts are within every contract's freshness window.
    summary = generate_council(
        args.root,
        args.residents,
        args.seed,
        noise=args.noise,
        extract_date=date.today(),
        invalid=args.invalid,
    )
    for department, rows in sorted(summary.rows.items()):
        print(f"  {department:<20} {rows:>9,} rows")
    print(f"  {'opt-out register':<20} {summary.objections:>9,} objections")
    print(
        f"Wrote {len(summary.rows)} extracts under {args.root / 'landing'} "
        f"in {summary.seconds:.1f} s"
    )
    return 0


def _flow_with_runner(flow, dask: str | None):
    if not dask:
        return flow
    from flows.runners import dask_task_runner

    return flow.with_options(task_runner=dask_task_runner(dask))


def cmd_run(args: argparse.Namespace) -> int:
    from flows.share_cohorts import STAGED_HERE, share_cohorts

    release_id = _flow_with_runner(share_cohorts, args.dask)(
        root=str(args.root),
        contracts=str(args.contracts),
        demo=args.demo,
        force=args.force,
        lock_wait_seconds=args.wait,
    )
    if release_id not in STAGED_HERE:
        print(
            f"No input changed since release {release_id}: nothing new staged "
            "(--force builds one anyway)."
        )
        return 0
    _print_deliveries(args.root, release_id)
    report = args.root / "reports" / release_id / "anonymisation_report.html"
    print(f"Release {release_id} staged, awaiting approval.")
    print(f"Anonymisation report: {report}")
    print(
        f"To decide: cohortshare approve {release_id} --name NAME --role ROLE "
        "--decision approve|reject"
    )
    return 0


def _print_deliveries(root: Path, release_id: str) -> None:
    """One line per delivery in the release: the accounting a data engineer checks first."""
    from transforms.release.report import read_report

    report = read_report(root, release_id)
    for d in report.deliveries:
        line = (
            f"  {d.department:<20} {d.status:<9} received {d.rows_received:>9,}  "
            f"accepted {d.rows_accepted:>9,}  quarantined {d.rows_quarantined:>7,}"
        )
        rejection = getattr(d, "rejection", None)
        print(line + (f"\n    {rejection}" if rejection else ""))
    for item in report.not_ingested:
        print(f"  not ingested: landing/{item['path']}: {item['reason']}")
    if report.opt_out:
        o = report.opt_out
        print(
            f"  opt-outs: {o['objections_received']:,} objections received, "
            f"{o['objections_matched']:,} matched, {o['objections_applied']:,} applied; "
            f"{o['records_removed']:,} records of {o['residents_removed']:,} residents removed"
        )
    if report.transparency:
        print(f"  notice for residents: {root / 'reports' / release_id / 'notice.html'}")


def cmd_approve(args: argparse.Namespace) -> int:
    from flows.approval import decide
    from transforms.release import decisions

    published = decide(
        args.root,
        args.release,
        name=args.name,
        role=args.role,
        decision=args.decision,
        conditions=args.conditions,
        reason=args.reason,
    )
    status = decisions.read(args.root, args.release)["status"]
    if published:
        print(f"Release {args.release} approved and published; catalogue: {published}")
    elif status == decisions.SECOND:
        print(f"Release {args.release}: approval recorded; it needs a second officer's approval.")
    else:
        print(f"Release {args.release} rejected; nothing was published.")
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    from flows.approval import withdraw

    catalogue = withdraw(
        args.root, args.release, name=args.name, role=args.role, reason=args.reason
    )
    print(f"Release {args.release} withdrawn; catalogue {catalogue} no longer shows it.")
    return 0


def _print_query(root: Path, sql: str) -> None:
    import polars as pl

    from transforms.release.catalogue import CATALOGUE_FILE, query_catalogue

    result = query_catalogue(root / "published" / CATALOGUE_FILE, sql)
    with pl.Config(tbl_rows=50, tbl_cols=20, fmt_str_lengths=60, tbl_hide_dataframe_shape=True):
        print(result)


def cmd_query(args: argparse.Namespace) -> int:
    _print_query(args.root, args.sql)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.share_cohorts import share_cohorts
    from transforms.release.catalogue import CATALOGUE_FILE
    from transforms.synthetic import foreign_files

    landing = args.root / "landing"
    if not landing.is_dir() or not any(landing.rglob("*.*")):
        cmd_generate(args)
    foreign = foreign_files(args.root)
    if foreign:
        raise UserError(
            f"{landing} holds {len(foreign)} file(s) the demo did not generate; the demo publishes "
            "only its own synthetic data: use another --root, or `cohortshare run` and approve"
        )
    print(
        "DEMO MODE: a local demo key pseudonymises the synthetic extracts, and the release is "
        "approved automatically (labelled as an automatic demo approval).",
        file=sys.stderr,
    )
    # Forced: the demo always shows a fresh release, even on unchanged extracts.
    release_id = share_cohorts(
        root=str(args.root),
        contracts=str(args.contracts),
        demo=True,
        demo_approval=True,
        force=True,
    )
    catalogue = args.root / "published" / CATALOGUE_FILE
    report = args.root / "reports" / release_id / "anonymisation_report.html"
    print()
    _print_deliveries(args.root, release_id)
    print(f"Release {release_id} published (automatic demo approval).")
    print(f"Published catalogue:  {catalogue}")
    print(f"Anonymisation report: {report}")
    print(f"Example query: {EXAMPLE_QUERY}")
    _print_query(args.root, EXAMPLE_QUERY)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cohortshare",
        description="Share what a council's departments know about residents as k-anonymous "
        "cohorts, without sharing the residents.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="write a seeded synthetic council's extracts to landing/")
    _add_root(gen)
    _add_council(gen)
    gen.set_defaults(func=cmd_generate)

    run = sub.add_parser("run", help="run the share_cohorts flow and stage a release for approval")
    _add_root(run)
    _add_contracts(run)
    run.add_argument(
        "--demo",
        action="store_true",
        help="use (and create if needed) a local demo key; never for real data",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="stage a new release even when no delivery, contract or declaration changed",
    )
    run.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another run or decision on the data root to finish "
        "(default: stop at once with BusyError)",
    )
    run.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run department tasks on a Dask cluster: a scheduler address, or 'local' for "
        "worker processes on this machine (needs prefect-dask)",
    )
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="generate a synthetic council, run, auto-approve, query")
    _add_root(demo)
    _add_contracts(demo)
    _add_council(demo)
    demo.set_defaults(func=cmd_demo)

    approve = sub.add_parser("approve", help="record an IG decision on a staged release")
    _add_root(approve)
    approve.add_argument("release", help="release id, as printed by `cohortshare run`")
    approve.add_argument("--name", required=True, help="the deciding officer's name")
    approve.add_argument("--role", required=True, help="the deciding officer's role")
    approve.add_argument("--decision", required=True, choices=["approve", "reject"])
    approve.add_argument("--conditions", help="conditions attached to an approval")
    approve.add_argument("--reason", help="why the release is rejected (required to reject)")
    approve.set_defaults(func=cmd_approve)

    withdraw = sub.add_parser("withdraw", help="take a published release out of the catalogue")
    _add_root(withdraw)
    withdraw.add_argument("release", help="release id")
    withdraw.add_argument("--name", required=True, help="the deciding officer's name")
    withdraw.add_argument("--role", required=True, help="the deciding officer's role")
    withdraw.add_argument("--reason", required=True, help="why the release is withdrawn")
    withdraw.set_defaults(func=cmd_withdraw)

    query = sub.add_parser("query", help="query the published catalogue (read-only)")
    _add_root(query)
    query.add_argument(
        "sql", nargs="?", default=EXAMPLE_QUERY, help="SQL to run (default: an example query)"
    )
    query.set_defaults(func=cmd_query)

    for command in (
        anonymise_command,
        audit_command,
        contracts_command,
        deliveries_command,
        keys_command,
    ):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_third_parties()
    from flows.guard import quiet_user_error_tracebacks

    quiet_user_error_tracebacks()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CohortShareError as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except BaseException as error:  # noqa: BLE001 - last line of defence, see module docstring
        from flows.guard import is_failure

        if not is_failure(error) or os.environ.get("COHORTSHARE_DEBUG") == "1":
            raise
        if isinstance(error, RuntimeError) and PREFECT_STARTUP_FAILURE in str(error):
            print(
                "PrefectStartupError: Prefect's temporary server did not start within "
                f"{os.environ['PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS']} s (a busy "
                "machine?); nothing was run. Try again, raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run a Prefect server "
                "(`prefect server start`) and set PREFECT_API_URL",
                file=sys.stderr,
            )
            return PREFECT_STARTUP_EXIT
        print(
            f"UnexpectedError: {type(error).__name__} (details withheld because library "
            "messages may quote data values; set COHORTSHARE_DEBUG=1 on a restricted machine "
            "to see them)",
            file=sys.stderr,
        )
        return UNEXPECTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
