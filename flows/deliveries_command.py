"""`cohortshare deliveries`: every delivery received, and an account of every row.

- `cohortshare deliveries` lists the delivery registry: department, file, fingerprint, contract
  version, status and counts (received = accepted + quarantined), newest last.
- `cohortshare deliveries check FILE --department D` holds one file to its contract without
  writing anything, prints its outcome, and exits 5 if it would be rejected.

Counts, names and fingerprints only: the registry never holds a cell value.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import date
from pathlib import Path

from schemas.contract import load_contracts
from schemas.delivery import DeliveryOutcome
from schemas.errors import DeliveryRejected, UserError
from transforms.intake import DeliveryRegistry

COLUMNS = (
    ("department", 20), ("file", 34), ("fingerprint", 16), ("version", 8), ("status", 9),
    ("received", 9), ("accepted", 9), ("quarantined", 11),
)


def _row(outcome: DeliveryOutcome) -> list[str]:
    return [
        outcome.department, outcome.file_name, outcome.short_id, outcome.contract_version,
        outcome.status, f"{outcome.rows_received:,}", f"{outcome.rows_accepted:,}",
        f"{outcome.rows_quarantined:,}",
    ]


def _table(outcomes: list[DeliveryOutcome]) -> str:
    lines = ["  ".join(f"{name:<{width}}" for name, width in COLUMNS)]
    for outcome in outcomes:
        cells = _row(outcome)
        lines.append("  ".join(
            f"{cell:>{width}}" if i >= 5 else f"{cell[:width]:<{width}}"
            for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
        ))
        if outcome.rejection_rule:
            lines.append(f"{'':>20}  rejected: {outcome.rejection_rule}")
        elif outcome.quarantine_by_column:
            breaches = ", ".join(f"{k} x{v}" for k, v in outcome.quarantine_by_column.items())
            lines.append(f"{'':>20}  quarantined: {breaches}")
    return "\n".join(lines)


def list_deliveries(args: argparse.Namespace) -> int:
    outcomes = DeliveryRegistry(args.root).all()
    if args.department:
        outcomes = [o for o in outcomes if o.department == args.department]
    if args.json:
        for outcome in outcomes:
            print(outcome.model_dump_json())
        return 0
    if not outcomes:
        print(f"No deliveries recorded under {args.root / 'audit'}.")
        return 0
    print(_table(outcomes))
    received = sum(o.rows_received for o in outcomes)
    accepted = sum(o.rows_accepted for o in outcomes)
    quarantined = sum(o.rows_quarantined for o in outcomes)
    print(f"\n{len(outcomes)} deliveries: {received:,} rows received = {accepted:,} accepted "
          f"+ {quarantined:,} quarantined (rejected deliveries count as quarantined)")
    return 0


def check_delivery(args: argparse.Namespace) -> int:
    # GX is slow to import: only when needed.
    from transforms.intake import discard_accepted, inspect_delivery

    contracts = load_contracts(args.contracts)
    if args.department not in contracts:
        raise UserError(
            f"no contract for department '{args.department}' in {args.contracts} "
            f"(known: {', '.join(sorted(contracts))})"
        )
    registry = DeliveryRegistry(args.root)
    received, _ = inspect_delivery(
        args.file, contracts[args.department], args.today or date.today(), registry=registry,
        accepted_to=discard_accepted,
    )
    outcome = received.outcome
    print(json.dumps(outcome.model_dump(mode="json", exclude={"processed_at"}), indent=2))
    if outcome.status == "rejected":
        raise DeliveryRejected(outcome.rejection)
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) == "check":
        return check_delivery(args)
    return list_deliveries(args)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path,
                        default=Path(os.environ.get("COHORTSHARE_ROOT", "data")),
                        help="data root (default: $COHORTSHARE_ROOT or ./data)")
    parser.add_argument("--contracts", type=Path, default=Path("data_contracts"),
                        help="folder of data contracts (default: %(default)s)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "deliveries", help="list deliveries and their row accounting, or check one file"
    )
    _add_common(parser)
    parser.add_argument("--department", help="only this department")
    parser.add_argument("--json", action="store_true", help="one JSON object per delivery")
    parser.set_defaults(func=run, action=None)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    checker = actions.add_parser("check", help="validate one file against its contract "
                                 "(writes nothing; exit 5 if it would be rejected)")
    checker.add_argument("file", type=Path)
    checker.add_argument("--department", required=True, help="whose contract applies")
    checker.add_argument("--today", type=date.fromisoformat,
                         help="date to judge freshness against (default: today)")
    _add_common(checker)
    checker.set_defaults(func=run)
