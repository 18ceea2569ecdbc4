"""Key custody for pseudonymisation: the key object, its id, purpose subkeys, key files.

The pseudonymisation key is the one secret of Cohort Share: whoever holds it can re-identify a
token by hashing guesses. So the key object never shows its material (repr, str, pickling into a
Prefect result), only its `key_id`, a one-way fingerprint that is safe to record in metadata, the
report and the audit log. Tokens are never made with the key itself but with a subkey per
purpose and identifier type, so tokens made for one purpose cannot be joined with another's.

Where the key comes from (Prefect Secret block, environment variable, key file) is decided in
`flows/key_source.py`; this module holds everything that needs no Prefect: parsing key text,
checking a key file is owner-only, and creating key files. Error messages never carry key
material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from schemas.errors import KeyCustodyError
from transforms.files import write_text_atomically

MIN_KEY_BYTES = 32
"""Shortest key accepted: 256 bits, the output size of SHA-256 (NCSC and NIST SP 800-107)."""

NEW_KEY_BYTES = 32
KEY_ENV_VAR = "COHORTSHARE_KEY"
KEY_FILE_ENV_VAR = "COHORTSHARE_KEY_FILE"
KEY_BLOCK_ENV_VAR = "COHORTSHARE_KEY_BLOCK"
DEFAULT_KEY_BLOCK = "cohortshare-pseudonymisation-key"
KEY_FILE_NAME = "pseudonymisation.key"
DEMO_KEY_FILE_NAME = "demo.key"
DEMO_PREFIX = "demo-"
TOKEN_SCHEME = "hmac-sha256/v1"
"""Recorded with every token set: a change of scheme, like a change of key, breaks linkage."""

_KEY_ID_LABEL = b"cohortshare key id"
_SUBKEY_LABEL = "cohortshare/v1/subkey/{purpose}/{name}"
HOW_TO_PROVIDE = (
    f"run `cohortshare key init`, or set {KEY_ENV_VAR} (hex, at least {MIN_KEY_BYTES} bytes), "
    f"or store it in the Prefect Secret block '{DEFAULT_KEY_BLOCK}'"
)


class PseudonymisationKey:
    """A pseudonymisation key. Only `key_id` may be shown, logged or recorded."""

    __slots__ = ("_material", "key_id", "source", "demo")

    def __init__(self, material: bytes, *, source: str = "unknown", demo: bool = False) -> None:
        if not isinstance(material, bytes | bytearray):
            raise KeyCustodyError("the pseudonymisation key must be bytes")
        if len(material) < MIN_KEY_BYTES:
            raise KeyCustodyError(
                f"the pseudonymisation key from {source} is too short: "
                f"{len(material)} bytes, at least {MIN_KEY_BYTES} are required; {HOW_TO_PROVIDE}"
            )
        self._material = bytes(material)
        fingerprint = hmac.new(self._material, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]
        self.key_id = (DEMO_PREFIX if demo else "k-") + fingerprint
        self.source = source
        self.demo = demo

    def subkey(self, purpose: str, name: str) -> bytes:
        """The HMAC key for tokens of one purpose (e.g. 'linkage') and identifier or rule name.

        The 64 ASCII hex characters of HMAC-SHA256(key, label), as bytes: a PRF output (as in
        HKDF-Expand with one block), so subkeys of different purposes are independent and the
        key itself never hashes data. Hex text, because that is what the vectorised HMAC engine
        accepts as a key; it is 64 bytes, exactly one SHA-256 block, so HMAC uses it unhashed.
        """
        label = _SUBKEY_LABEL.format(purpose=purpose, name=name).encode()
        return hmac.new(self._material, label, hashlib.sha256).hexdigest().encode("ascii")

    def export_text(self) -> str:
        """The key as hex, only for writing it to its own store (key file, Secret block)."""
        return self._material.hex()

    def __repr__(self) -> str:
        return f"PseudonymisationKey(key_id={self.key_id!r}, source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PseudonymisationKey):
            return NotImplemented
        return hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __reduce__(self):
        # Prefect pickles task results and parameters: refuse, so a key never lands on disk.
        raise TypeError("a PseudonymisationKey must not be pickled or persisted")

    def __copy__(self) -> PseudonymisationKey:
        return self

    def __deepcopy__(self, memo: dict) -> PseudonymisationKey:
        return self


def generate_key(*, source: str = "generated", demo: bool = False) -> PseudonymisationKey:
    return PseudonymisationKey(secrets.token_bytes(NEW_KEY_BYTES), source=source, demo=demo)


def parse_key_text(text: str, source: str, *, demo: bool = False) -> PseudonymisationKey:
    """Read a key written as hex (what `cohortshare key init` writes) or as base64."""
    cleaned = "".join(text.split())
    if not cleaned:
        raise KeyCustodyError(f"the pseudonymisation key from {source} is empty; {HOW_TO_PROVIDE}")
    material: bytes | None = None
    if len(cleaned) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in cleaned):
        material = bytes.fromhex(cleaned)
    else:
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                material = decode(cleaned + "=" * (-len(cleaned) % 4))
                break
            except (binascii.Error, ValueError):
                continue
    if material is None:
        raise KeyCustodyError(
            f"the pseudonymisation key from {source} is neither hex nor base64; {HOW_TO_PROVIDE}"
        )
    return PseudonymisationKey(material, source=source, demo=demo)


def config_dir() -> Path:
    """Where keys live by default: outside any project tree, in the user's config directory."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cohortshare"


def default_key_path() -> Path:
    return config_dir() / KEY_FILE_NAME


def demo_key_path() -> Path:
    return config_dir() / DEMO_KEY_FILE_NAME


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def check_key_file(path: Path) -> None:
    """Refuse a key file that others could read or write, or that lives in the project tree."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyCustodyError(f"key file {path} does not exist; {HOW_TO_PROVIDE}") from None
    except OSError as exc:
        raise KeyCustodyError(f"key file {path} cannot be read ({type(exc).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyCustodyError(f"key file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise KeyCustodyError(
            f"key file {path} is readable or writable by others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); run `chmod 600 {path}`"
        )
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise KeyCustodyError(f"key file {path} is not owned by the user running Cohort Share")
    resolved = path.resolve()
    if resolved.is_relative_to(project_root()):
        raise KeyCustodyError(
            f"key file {path} is inside the project tree, where it could be committed or "
            "published; keep it in the user's config directory"
        )


def read_key_file(path: Path, *, demo: bool = False) -> PseudonymisationKey:
    check_key_file(path)
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyCustodyError(f"key file {path} cannot be read ({type(exc).__name__})") from None
    return parse_key_text(text, f"key file {path}", demo=demo)


def write_key_file(path: Path, key: PseudonymisationKey, *, overwrite: bool = False) -> None:
    """Write the key as hex, owner-only (0600) from the first byte, atomically."""
    path = Path(path)
    if path.resolve().is_relative_to(project_root()):
        raise KeyCustodyError(f"refusing to write a key file inside the project tree: {path}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() and not overwrite:
        raise KeyCustodyError(f"key file {path} already exists; refusing to overwrite it")
    # Owner-only from the first byte: the temporary file is created 0600.
    write_text_atomically(path, key.export_text() + "\n", encoding="ascii", mode=0o600)
