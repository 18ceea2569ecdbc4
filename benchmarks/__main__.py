"""Run one benchmark: `python -m benchmarks NAME [options]`.

Each benchmark module `benchmarks/NAME.py` has `main(argv) -> int` and prints one JSON object.
"""

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main() -> int:
    names = available()
    if len(sys.argv) < 2 or sys.argv[1] in {"-h", "--help"}:
        print(f"usage: python -m benchmarks NAME [options]; NAME is one of: {', '.join(names)}")
        return 0 if len(sys.argv) >= 2 else 2
    name = sys.argv[1]
    if name not in names:
        print(f"unknown benchmark '{name}'; choose one of: {', '.join(names)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{name}")
    return int(module.main(sys.argv[2:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
