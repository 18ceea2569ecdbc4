"""Identity: keyed pseudonyms instead of identifiers, then one person per resident.

`pseudonymise` (with `normalise` and `keys`) is the last place identifiable values exist;
`secure` stores tokens, `link` joins records of one person across departments (its rules in
`linkage_rules`, its connected components in `components`), `opt_out` removes every record of
residents who objected, `population` collapses the rest to one row per resident. `keys` is
public as a module: the key custody commands use much of it.
"""

from transforms.identity.geography import GEOGRAPHY_FILE, load_geography
from transforms.identity.link import link, link_files
from transforms.identity.linkage_rules import load_linkage_rules
from transforms.identity.opt_out import (
    apply_opt_outs,
    objecting_residents,
    read_register,
    registers_apart,
    release_extract_date,
)
from transforms.identity.population import (
    PersonFeatures,
    build_population,
    finish_population,
    person_features,
    residents_of,
    split_records,
)
from transforms.identity.pseudonymise import pseudonymise, token_file
from transforms.identity.secure import (
    latest_tokens,
    read_metadata,
    token_path,
    tokens_dir,
    write_tokens,
)

__all__ = [
    "PersonFeatures",
    "GEOGRAPHY_FILE",
    "apply_opt_outs",
    "build_population",
    "finish_population",
    "person_features",
    "latest_tokens",
    "link",
    "link_files",
    "load_geography",
    "load_linkage_rules",
    "objecting_residents",
    "pseudonymise",
    "read_metadata",
    "read_register",
    "registers_apart",
    "release_extract_date",
    "residents_of",
    "split_records",
    "token_file",
    "token_path",
    "tokens_dir",
    "write_tokens",
]
PUBLIC_MODULES = ("keys",)
