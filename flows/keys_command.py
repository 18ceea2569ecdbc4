"""`cohortshare key init | rotate | id`: create, rotate and identify the pseudonymisation key.

Only key ids are ever printed or recorded. Rotation re-makes every secure-zone token from the
delivery it came from (still in `landing/`) with the new key, so no table linking old tokens,
new tokens or raw identifiers is ever written, and nothing needs the old key afterwards.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from flows.key_source import KeyLocation, key_block_name, key_file_path, locate_key, store_key
from schemas.contract import load_contracts
from schemas.errors import KeyCustodyError, UserError
from transforms.identity import (
    GEOGRAPHY_FILE,
    load_geography,
    load_linkage_rules,
    read_metadata,
    token_file,
    token_path,
    tokens_dir,
)
from transforms.identity.keys import PseudonymisationKey, generate_key
from transforms.intake import discover_deliveries, fingerprint_file, printable
from transforms.release import audit
from transforms.root_lock import root_lock

# A rotation waits this long for a run or a decision holding the data root's lock.
ROTATION_LOCK_WAIT_SECONDS = 60.0

# Secure-zone folders derived from tokens (person and household keys): stale after a rotation,
# rebuilt by the next run.
DERIVED_FOLDERS = ("linked", "anonymised")


def add_parser(subparsers) -> None:
    key = subparsers.add_parser(
        "key", help="create, rotate or identify the pseudonymisation key (never shown)"
    )
    actions = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")

    init = actions.add_parser("init", help="create a new key in a key file or Prefect Secret block")
    init.add_argument("--file", type=Path, default=None,
                      help="key file to create (default: $COHORTSHARE_KEY_FILE or "
                      "~/.config/cohortshare/pseudonymisation.key)")
    init.add_argument("--prefect-block", metavar="NAME", default=None,
                      help="store the key in this Prefect Secret block instead of a file")
    init.set_defaults(func=run)

    rotate = actions.add_parser(
        "rotate", help="replace the key and re-tokenise the secure zone from landing/"
    )
    rotate.add_argument("--root", type=Path,
                        default=Path(os.environ.get("COHORTSHARE_ROOT", "data")),
                        help="data root (default: $COHORTSHARE_ROOT or ./data)")
    rotate.add_argument("--contracts", type=Path, default=Path("data_contracts"),
                        help="folder of data contracts and linkage rules (default: %(default)s)")
    rotate.add_argument("--demo", action="store_true", help="rotate the local demo key")
    rotate.add_argument("--resume", action="store_true",
                        help="keep the current key; finish re-tokenising deliveries made with "
                        "another key (after an interrupted rotation)")
    rotate.add_argument("--discard-orphans", action="store_true",
                        help="delete secure deliveries whose landing file is gone instead of "
                        "refusing to rotate")
    rotate.set_defaults(func=run)

    ident = actions.add_parser("id", help="print the id of the key in use")
    ident.add_argument("--demo", action="store_true", help="the local demo key")
    ident.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.key_command == "init":
        return key_init(args.file, args.prefect_block)
    if args.key_command == "rotate":
        summary = rotate_key(args.root, args.contracts, demo=args.demo, resume=args.resume,
                             discard_orphans=args.discard_orphans)
        print(summary.describe())
        return 0
    key, location = locate_key(args.demo)
    print(f"{key.key_id} ({location.describe()})")
    return 0


def key_init(path: Path | None = None, block: str | None = None) -> int:
    if path is not None and block is not None:
        raise UserError("choose one of --file and --prefect-block")
    key = generate_key(source="cohortshare key init")
    if block is not None:
        location = KeyLocation("prefect_block", block)
    else:
        location = KeyLocation("file", str(Path(path).expanduser() if path else key_file_path()))
    store_key(key, location, overwrite=False)
    print(f"Created pseudonymisation key {key.key_id} in {location.describe()} (owner-only).")
    print("Back it up where your organisation keeps secrets: without it tokens cannot be re-made, "
          "and linkage with earlier releases is lost.", file=sys.stderr)
    if location.kind == "prefect_block" and location.name != key_block_name():
        print(f"Set COHORTSHARE_KEY_BLOCK={location.name} for runs to find it.", file=sys.stderr)
    return 0


@dataclass
class RotationSummary:
    old_key_id: str
    new_key_id: str
    key_store: str
    deliveries_retokenised: int = 0
    deliveries_discarded: int = 0
    derived_files_removed: int = 0
    departments: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = (
            f"Rotated {self.old_key_id} -> {self.new_key_id} ({self.key_store}); "
            f"re-tokenised {self.deliveries_retokenised} secure deliveries"
        )
        if self.deliveries_discarded:
            text += f", discarded {self.deliveries_discarded} without a landing file"
        if self.derived_files_removed:
            text += (f"; removed {self.derived_files_removed} derived file(s), rebuilt by the "
                     "next run")
        return text + "."


def _secure_deliveries(root: Path) -> list[tuple[Path, dict]]:
    base = tokens_dir(root)
    if not base.is_dir():
        return []
    return [(p, read_metadata(p)) for p in sorted(base.glob("*/[0-9]*.parquet"))]


def _landing_by_fingerprint(root: Path, contracts: dict) -> dict[str, Path]:
    # The run's own discovery: pipes, directories and links out of landing/ are never opened.
    return {fingerprint_file(p): p for _, p in discover_deliveries(root, contracts).deliveries}


def rotate_key(root: Path, contracts_dir: Path, **options) -> RotationSummary:
    """Store a new key, then re-make every secure delivery not made with it, from landing/.

    Holds the data root's lock: a run or a decision never sees half the deliveries re-made."""
    with root_lock(Path(root), "key rotation", wait_seconds=ROTATION_LOCK_WAIT_SECONDS):
        return _rotate_key(root, contracts_dir, **options)


def _rotate_key(
    root: Path,
    contracts_dir: Path,
    *,
    demo: bool = False,
    resume: bool = False,
    discard_orphans: bool = False,
    new_key: PseudonymisationKey | None = None,
) -> RotationSummary:
    from transforms.intake import inspect_delivery  # GX: imported only when rotating

    root = Path(root)
    contracts = load_contracts(Path(contracts_dir))
    rules = load_linkage_rules(Path(contracts_dir) / "linkage.yaml")
    current, location = locate_key(demo)
    if location.kind == "environment":
        raise KeyCustodyError(
            f"the key comes from {location.describe()}; rotate it where it is kept, or move it to "
            "a key file or Prefect Secret block so `cohortshare key rotate` can rewrite it"
        )
    deliveries = _secure_deliveries(root)
    sources = _landing_by_fingerprint(root, contracts)
    orphans = [
        (p, m) for p, m in deliveries
        if m.get("delivery_id") not in sources or m.get("department") not in contracts
    ]
    if orphans and not discard_orphans:
        departments = sorted({m.get("department", p.parent.name) for p, m in orphans})
        raise KeyCustodyError(
            f"{len(orphans)} secure deliveries ({', '.join(departments)}) have no landing file "
            "to re-tokenise from; restore them to landing/, or pass --discard-orphans"
        )

    if resume:
        key = current
    else:
        key = new_key or generate_key(source=location.describe(), demo=demo)
        # The new key is stored before any token is re-made: an interrupted rotation leaves
        # deliveries with the old key id, which `--resume` finishes without the old key.
        store_key(key, location, overwrite=True)
    previous = sorted({m.get("key_id", "unknown") for _, m in deliveries} - {key.key_id})
    summary = RotationSummary(old_key_id=current.key_id if not resume else ",".join(previous),
                              new_key_id=key.key_id, key_store=location.describe())
    for path, _ in orphans:
        path.unlink(missing_ok=True)
        summary.deliveries_discarded += 1
    geography = load_geography(Path(contracts_dir) / GEOGRAPHY_FILE)
    orphan_paths = {p for p, _ in orphans}
    for path, meta in deliveries:
        if path in orphan_paths or meta.get("key_id") == key.key_id:
            continue
        contract = contracts[meta["department"]]
        # Freshness is judged as on the day the delivery was first received.
        landing_file = sources[meta["delivery_id"]]
        tokens_to = functools.partial(
            token_file, root, contract=contract, key=key, geography=geography, rules=rules,
            file_name=printable(landing_file.name),
        )
        received, _ = inspect_delivery(landing_file, contract,
                                       date.fromisoformat(meta["extract_date"]),
                                       accepted_to=tokens_to)
        outcome = received.outcome
        if outcome.status != "accepted":
            raise KeyCustodyError(
                f"{meta['department']}: a secure delivery's landing file is no longer accepted "
                "by its contract; re-deliver it, or pass --discard-orphans after removing it"
            )
        written = token_path(root, outcome.department, outcome.extract_date, outcome.delivery_id)
        if written != path:
            path.unlink(missing_ok=True)
        summary.deliveries_retokenised += 1
        if meta["department"] not in summary.departments:
            summary.departments.append(meta["department"])
    for folder in DERIVED_FOLDERS:
        for stale in sorted((root / "secure" / folder).glob("*.parquet")):
            stale.unlink()
            summary.derived_files_removed += 1
    audit.record_event(
        root, "key_rotated" if not resume else "key_rotation_resumed",
        old_key_id=summary.old_key_id, new_key_id=summary.new_key_id,
        key_store=location.kind, deliveries_retokenised=summary.deliveries_retokenised,
        deliveries_discarded=summary.deliveries_discarded,
        derived_files_removed=summary.derived_files_removed,
    )
    return summary
