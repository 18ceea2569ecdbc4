"""`cohortshare audit`: read and check the hash-chained audit log.

- `cohortshare audit show [--release ID] [--json]` prints the events, oldest first: when, what,
  which release, who (typed name, OS user, host) and why.
- `cohortshare audit verify` walks the chain and exits 16 (AuditLogTampered) naming every line
  that was edited, inserted or removed; on success it prints the head hash, to be kept elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from schemas.errors import AuditLogTampered
from transforms.release import audit

SHOWN = ("release_id", "department", "name", "os_user", "host", "reason", "conditions")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("audit", help="show or verify the tamper-evident audit log")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the audit events, oldest first")
    show.add_argument("--release", help="only events of this release")
    show.add_argument("--json", action="store_true", help="one JSON object per event")
    verify = actions.add_parser("verify", help="check the hash chain of the audit log")
    for action in (show, verify):
        action.add_argument(
            "--root",
            type=Path,
            default=Path(os.environ.get("COHORTSHARE_ROOT", "data")),
            help="data root (default: $COHORTSHARE_ROOT or ./data)",
        )
    show.set_defaults(func=show_events)
    verify.set_defaults(func=verify_log)


def show_events(args: argparse.Namespace) -> int:
    events = audit.read_events(args.root)
    if args.release:
        events = [e for e in events if e.get("release_id") == args.release]
    for event in events:
        if args.json:
            print(json.dumps(event, sort_keys=True))
            continue
        details = "  ".join(f"{k}={event[k]}" for k in SHOWN if event.get(k) not in (None, ""))
        print(f"{event['at']}  {event['event']:<26}  {details}")
    if not args.json:
        print(f"{len(events)} event(s)")
    return 0


def verify_log(args: argparse.Namespace) -> int:
    result = audit.verify(args.root)
    if not result.ok:
        raise AuditLogTampered(
            f"{len(result.problems)} problem(s) in {args.root / 'audit' / audit.AUDIT_FILE}: "
            + "; ".join(result.problems)
        )
    print(f"Audit log intact: {result.events} event(s), head {result.last_hash}")
    return 0
