"""`cohortshare contracts check|docs`: keep department contracts honest and readable.

- `check` validates every contract (all problems at once), then compares each with its
  previous version in git and lists breaking changes; any breaking change exits non-zero.
- `docs` renders one readable page per contract (Markdown) for data owners and IG officers.

Contracts describe data, they hold none: nothing here reads an extract.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from schemas.contract import (
    CONTRACT_SUFFIX,
    breaking_changes,
    load_contracts,
    parse_contract_text,
)
from schemas.errors import ContractError
from transforms.files import write_text_atomically
from transforms.intake import render_page

# --- check ---------------------------------------------------------------------------------


def _previous_text(path: Path, ref: str) -> str | None:
    """The contract as committed at `ref`, or None if git has no such version."""
    path = path.resolve()
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=path.parent, capture_output=True,
            text=True, check=True,
        ).stdout.strip()
        relative = path.relative_to(Path(top).resolve()).as_posix()
        shown = subprocess.run(
            ["git", "show", f"{ref}:{relative}"], cwd=top, capture_output=True, text=True,
            check=False,
        )
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None
    return shown.stdout if shown.returncode == 0 else None


def check(contracts_dir: Path, ref: str = "HEAD") -> list[str]:
    """Print every contract's changes against git `ref`; return the breaking ones."""
    contracts = load_contracts(contracts_dir)  # raises ContractError with every problem
    breaking: list[str] = []
    for department, contract in sorted(contracts.items()):
        path = Path(contract.path)
        text = _previous_text(path, ref)
        if text is None:
            print(f"{path.name}: version {contract.version}, no previous version in git ({ref})")
            continue
        problems: list[str] = []
        previous = parse_contract_text(text, path, problems)
        if previous is None:
            print(f"{path.name}: previous version at {ref} is invalid; not compared")
            continue
        changes = breaking_changes(previous, contract)
        same_version = previous.version == contract.version
        if not changes:
            print(f"{path.name}: {previous.version} -> {contract.version}, no breaking change")
            continue
        print(f"{path.name}: {previous.version} -> {contract.version}, "
              f"{len(changes)} breaking change(s)")
        for change in changes:
            print(f"  - {change}")
        if same_version:
            print("  - version not bumped for a breaking change")
        breaking += [f"{department}: {change}" for change in changes]
    return breaking


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        breaking = check(args.contracts, args.against)
        if breaking:
            raise ContractError(
                f"{len(breaking)} breaking change(s) against {args.against}: "
                + "; ".join(breaking)
            )
        print("No breaking changes.")
        return 0
    contracts = load_contracts(args.contracts)
    out = args.out or args.root / "reports" / "contracts"
    out.mkdir(parents=True, exist_ok=True)
    index = ["# Data contracts", ""]
    for department, contract in sorted(contracts.items()):
        page = out / f"{department}.md"
        write_text_atomically(page, render_page(contract))
        index.append(f"- [{contract.title}]({page.name}) (`{department}`, "
                     f"version {contract.version})")
    write_text_atomically(out / "index.md", "\n".join(index) + "\n")
    print(f"Wrote {len(contracts)} contract page(s) and index.md to {out}")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "contracts", help=f"check data contracts (*{CONTRACT_SUFFIX}) or render their pages"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("check", "validate contracts and list breaking changes against git (exit 4 if any)"),
        ("docs", "render a readable page per contract for data owners and IG officers"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--contracts", type=Path, default=Path("data_contracts"),
                            help="folder of data contracts (default: %(default)s)")
        action.add_argument("--root", type=Path,
                            default=Path(os.environ.get("COHORTSHARE_ROOT", "data")),
                            help="data root (default: $COHORTSHARE_ROOT or ./data)")
        action.set_defaults(func=run)
    actions.choices["check"].add_argument(
        "--against", default="HEAD", help="git revision to compare with (default: %(default)s)"
    )
    actions.choices["docs"].add_argument(
        "--out", type=Path, help="output folder (default: <root>/reports/contracts)"
    )
