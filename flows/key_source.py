"""Where the pseudonymisation key comes from: Prefect Secret block, environment, key file.

Resolution order (first found wins):
1. the Prefect Secret block named by `COHORTSHARE_KEY_BLOCK` (default
   `cohortshare-pseudonymisation-key`), where a deployment's operators keep it;
2. the environment variable `COHORTSHARE_KEY` (hex or base64);
3. the key file named by `COHORTSHARE_KEY_FILE`, else `~/.config/cohortshare/pseudonymisation.key`
   (or under `$XDG_CONFIG_HOME`), which must be readable by its owner only.

Demo mode uses a separate, clearly labelled key (`key_id` starting `demo-`) created once in the
user's config directory, never in the project tree. Nothing here logs or prints key material.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from schemas.errors import KeyCustodyError
from transforms.identity.keys import (
    DEFAULT_KEY_BLOCK,
    HOW_TO_PROVIDE,
    KEY_BLOCK_ENV_VAR,
    KEY_ENV_VAR,
    KEY_FILE_ENV_VAR,
    PseudonymisationKey,
    default_key_path,
    demo_key_path,
    generate_key,
    parse_key_text,
    read_key_file,
    write_key_file,
)

SKIP_BLOCK_ENV_VAR = "COHORTSHARE_KEY_SKIP_PREFECT"
"""Set to 1 to skip the Prefect Secret lookup (saves starting an ephemeral server in scripts)."""


def key_block_name() -> str:
    return os.environ.get(KEY_BLOCK_ENV_VAR) or DEFAULT_KEY_BLOCK


def key_file_path() -> Path:
    configured = os.environ.get(KEY_FILE_ENV_VAR)
    return Path(configured).expanduser() if configured else default_key_path()


def _from_prefect_block(name: str) -> PseudonymisationKey | None:
    """The key from a Prefect Secret block, or None when no such block exists."""
    if os.environ.get(SKIP_BLOCK_ENV_VAR, "").strip().lower() in {"1", "true", "yes"}:
        return None
    try:
        from prefect.blocks.system import Secret
    except ImportError:  # pragma: no cover - Prefect is a dependency
        return None
    try:
        block = Secret.load(name)
    except ValueError:
        return None  # no block document of that name
    except Exception as exc:  # the API is unreachable: say so, never fall back silently
        raise KeyCustodyError(
            f"cannot read the Prefect Secret block '{name}' ({type(exc).__name__}); set "
            f"{SKIP_BLOCK_ENV_VAR}=1 to use {KEY_ENV_VAR} or the key file instead"
        ) from None
    # `Secret.get()` JSON-decodes the value (an all-digit hex key would become an int).
    value = block.value.get_secret_value()
    if not isinstance(value, str):
        raise KeyCustodyError(f"the Prefect Secret block '{name}' does not hold a text key")
    return parse_key_text(value, f"Prefect Secret block '{name}'")


@dataclass(frozen=True)
class KeyLocation:
    """Where the key in use is kept: what `cohortshare key rotate` must rewrite."""

    kind: Literal["prefect_block", "environment", "file"]
    name: str

    def describe(self) -> str:
        return {
            "prefect_block": f"Prefect Secret block '{self.name}'",
            "environment": f"environment variable {self.name}",
            "file": f"key file {self.name}",
        }[self.kind]


def locate_key(demo: bool = False) -> tuple[PseudonymisationKey, KeyLocation]:
    """The key and where it was found, in resolution order; `KeyCustodyError` if nowhere."""
    if demo:
        return demo_key(), KeyLocation("file", str(demo_key_path()))
    block = key_block_name()
    key = _from_prefect_block(block)
    if key is not None:
        return key, KeyLocation("prefect_block", block)
    text = os.environ.get(KEY_ENV_VAR)
    if text is not None:
        return parse_key_text(text, f"environment variable {KEY_ENV_VAR}"), KeyLocation(
            "environment", KEY_ENV_VAR
        )
    path = key_file_path()
    if path.exists():
        return read_key_file(path), KeyLocation("file", str(path))
    raise KeyCustodyError(f"no pseudonymisation key found; {HOW_TO_PROVIDE}")


def resolve_key(demo: bool = False) -> PseudonymisationKey:
    """The pseudonymisation key, or `KeyCustodyError` saying how to provide one."""
    return locate_key(demo)[0]


def store_key(key: PseudonymisationKey, location: KeyLocation, *, overwrite: bool) -> None:
    """Keep `key` at `location` (a key file, owner-only, or a Prefect Secret block)."""
    if location.kind == "file":
        write_key_file(Path(location.name), key, overwrite=overwrite)
    elif location.kind == "prefect_block":
        from prefect.blocks.system import Secret

        try:
            Secret(value=key.export_text()).save(location.name, overwrite=overwrite)
        except ValueError:
            raise KeyCustodyError(
                f"the Prefect Secret block '{location.name}' already exists; refusing to "
                "overwrite it (use `cohortshare key rotate`)"
            ) from None
    else:
        raise KeyCustodyError(
            f"the key comes from {location.describe()}, which Cohort Share cannot rewrite; keep "
            "it in a key file or a Prefect Secret block to rotate it here"
        )


def demo_key() -> PseudonymisationKey:
    """The local demo key, created on first use (mode 0600, outside the project tree)."""
    path = demo_key_path()
    if not path.exists():
        try:
            write_key_file(path, generate_key(source=f"demo key file {path}", demo=True))
        except KeyCustodyError:
            if not path.exists():  # another process may have created it meanwhile
                raise
    return read_key_file(path, demo=True)
