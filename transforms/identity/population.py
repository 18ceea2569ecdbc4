"""From linked departmental records to one row per resident: the population cohorts count.

A resident seen by several departments may carry different quasi-identifier values in each
(a typo in a date of birth, a house move). We take each value from the department that records
it most reliably, in the order of `SOURCE_PRIORITY`, so the choice is explainable to an IG officer.

Person attributes (a department's columns declared `cohortAttribute` in its contract) are
combined over the resident's records in that department as the contract says; indicators
(`data_contracts/indicators.yaml`) are evaluated on each record and held when any record meets
them. Both are declarative: a new department or indicator needs no code change here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import polars as pl

from schemas.cohorts import Indicator, IndicatorDefinitions
from schemas.contract import POLARS_TYPES, Combine, DepartmentContract, source_priority
from schemas.errors import ConfigError

# Departments whose identity data is checked against documents come first: benefits claims and
# social care assessments verify date of birth; council tax often does not record it at all.
# The contracts declare it (`identityPriority`); this is the order they declare, for callers
# that build a population without contracts (tests, benchmarks).
SOURCE_PRIORITY = ("benefits", "adult_social_care", "childrens_services", "housing", "council_tax")

SEX_UNKNOWN = "U"
ETHNICITY_NOT_STATED = "NS"
# Age is a category here ("37" or "unknown"): council tax rarely records a date of birth, and
# dropping everyone known only to council tax would bias every cohort. The age hierarchy
# declares the same label.
AGE_UNKNOWN = "unknown"

# Columns every population has, and what kind of value each holds (for validating cohort
# definitions before any data is read).
BASE_COLUMNS = {
    "age": "text",
    "sex": "text",
    "ethnicity": "text",
    "lsoa": "text",
    "departments": "list",
    "household_departments": "number",
    "indicators": "list",
    "indicator_count": "number",
}


@dataclass(frozen=True)
class Attribute:
    department: str
    name: str
    combine: Combine
    dtype: type[pl.DataType]


@dataclass(frozen=True)
class PersonFeatures:
    """What the population carries beyond the base columns, as the contracts declare."""

    departments: tuple[str, ...] = ()
    # Whose identity data is trusted first (contracts' `identityPriority`).
    priority: tuple[str, ...] = SOURCE_PRIORITY
    attributes: tuple[Attribute, ...] = ()
    indicators: tuple[Indicator, ...] = field(default_factory=tuple)

    def columns(self) -> dict[str, str]:
        """Every population column a cohort table may use, with its kind."""
        kinds = dict(BASE_COLUMNS)
        for attribute in self.attributes:
            kinds[attribute.name] = _kind(attribute)
        for department in self.departments:
            kinds[f"known_to_{department}"] = "bool"
        for indicator in self.indicators:
            kinds[indicator.name] = "bool"
        return kinds


def _kind(attribute: Attribute) -> str:
    if attribute.combine == "count" or attribute.dtype in (pl.Int64, pl.Float64):
        return "number"
    return "bool" if attribute.dtype == pl.Boolean else "text"


def person_features(
    contracts: dict[str, DepartmentContract], indicators: IndicatorDefinitions | None
) -> PersonFeatures:
    """Collect the declared attributes and check the indicators against them, all at once."""
    problems: list[str] = []
    attributes: list[Attribute] = []
    seen: dict[str, str] = {}
    for department, contract in sorted(contracts.items()):
        for column in contract.columns:
            if column.cohort_combine is None:
                continue
            if column.name in seen or column.name in BASE_COLUMNS:
                problems.append(
                    f"{department}: cohortAttribute '{column.name}' is also declared by "
                    f"{seen.get(column.name, 'the population itself')}"
                )
            seen[column.name] = department
            attributes.append(
                Attribute(
                    department, column.name, column.cohort_combine,
                    POLARS_TYPES[column.logical_type],
                )
            )
    declared = tuple(indicators.indicators) if indicators else ()
    for i, indicator in enumerate(declared):
        where = f"indicators.yaml: indicators[{i}] ({indicator.name})"
        if indicator.department not in contracts:
            problems.append(f"{where}: department '{indicator.department}' has no contract")
            continue
        if indicator.name in seen or indicator.name in BASE_COLUMNS:
            problems.append(f"{where}: name is already a population column")
        usable = {a.name for a in attributes if a.department == indicator.department}
        try:
            used = set(pl.sql_expr(indicator.rule).meta.root_names())
        except Exception as exc:  # noqa: BLE001 - Polars raises several types for bad SQL
            problems.append(f"{where}: rule is not a SQL expression ({type(exc).__name__})")
            continue
        if used - usable:
            problems.append(
                f"{where}: rule uses {sorted(used - usable)}, which are not cohort attributes "
                f"of {indicator.department} (declared: {sorted(usable)})"
            )
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) in person features: " + "; ".join(problems))
    return PersonFeatures(
        tuple(sorted(contracts)), source_priority(contracts), tuple(attributes), declared
    )


@dataclass(frozen=True)
class PopulationCounts:
    records: int
    people: int
    households: int
    people_incomplete: int  # no usable area (postcode outside the borough): in no cohort

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _combined(attribute: Attribute) -> pl.Expr:
    column = pl.col(attribute.name)
    how = attribute.combine
    if how == "count":
        return column.count().cast(pl.Int64).alias(attribute.name)
    combined = {
        "any": column.any(),
        "all": column.all(),
        "latest": column.drop_nulls().last(),  # records are in extract order
        "max": column.max(),
        "min": column.min(),
        # A resident's weekly award over all their claims (null when none has an amount).
        # The amounts alone are summed: summed among other departments' nulls, 7,464 of 7M
        # residents' totals came out a rounding error apart.
        "sum": pl.when(column.count() > 0).then(column.drop_nulls().sum()),
    }[how]
    return combined.alias(attribute.name)


def _per_department(features: PersonFeatures) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """Each declared attribute and indicator as a record column that is null outside its
    department (for the sort), and its aggregation per person (for the group-by): one group-by
    for every column, not a filter, sort, group-by and join per department (10M records:
    residents 13.2-14.5 s -> 11.3 s, the same population)."""
    columns, aggregations = [], []
    for attribute in features.attributes:
        in_department = pl.col("department") == attribute.department
        columns.append(pl.when(in_department).then(pl.col(attribute.name)).alias(attribute.name))
        aggregations.append(_known_to(attribute.department, _combined(attribute)))
    for indicator in features.indicators:
        rule = pl.sql_expr(indicator.rule).fill_null(False)
        # The rule reads its department's raw attributes, before they are masked above.
        columns.append(pl.when(pl.col("department") == indicator.department).then(rule)
                       .alias(indicator.name))
        aggregations.append(_known_to(indicator.department, pl.col(indicator.name).any()))
    return columns, aggregations


def _known_to(department: str, aggregation: pl.Expr) -> pl.Expr:
    """Null for a person with no record in `department` (as `any` of none would be false)."""
    name = aggregation.meta.output_name()
    return pl.when((pl.col("department") == department).any()).then(aggregation).alias(name)


# Records per partition of the population build: each partition (a range of person keys) is
# sorted and grouped on its own, so the working memory of the build is that of one partition,
# whatever the council's size (docs/operations.md, Scale). Partitions are ranges, not hashes,
# so each comes out sorted by person key and their concatenation is the sorted population: no
# sort of the whole population at the end (8 s at 7M residents).
PARTITION_RECORDS = 2_000_000
# Every this-many-th record's person key is a candidate boundary between partitions.
_BOUNDARY_SAMPLE = 1_000


def partitions_for(records: int) -> int:
    return max(1, -(-records // PARTITION_RECORDS))


def person_partition(keys: pl.Series, parts: int) -> pl.Series:
    """Which partition each record goes to (0 .. parts-1): a range of person keys, so every
    record of a person goes to the same one, and partition i's keys all sort before i+1's.
    Boundaries are quantiles of a sample of the keys; how even the partitions are does not
    change the result."""
    sample = keys.gather_every(max(1, keys.len() // (parts * _BOUNDARY_SAMPLE))).sort()
    at = [sample.len() * i // parts for i in range(1, parts)] if sample.len() else []
    cuts = sample.gather(at)
    return cuts.search_sorted(keys, side="right")


PEOPLE_COLUMNS = ("person_key", "household_key", "age", "sex", "ethnicity", "lsoa", "departments")
# Linkage's person keys are "p-" and 24 lower-case hex digits (`link.py`). Read as 128-bit
# integers they sort, group and join in less time than as text, in the same order: the build
# works on the numbers, carries the text along, and puts it back (with the departments as bits,
# 10M records: 26-31 s -> 18-22 s). Keys of any other form are used as they are.
_LINKAGE_KEY = r"^p-[0-9a-f]{24}$"
_KEY_TEXT = "_person_key_text"
# A resident's departments as bits of one number (`_department_bits`).
_HELD = "_departments_held"


def _department_bits(departments: pl.Series) -> dict[str, int]:
    names = sorted(departments.unique().drop_nulls().to_list())
    if len(names) > 63:
        raise ConfigError(f"{len(names)} departments: a population holds at most 63")
    return {name: 1 << i for i, name in enumerate(names)}


def _key_numbers(keys: pl.Series) -> pl.Series | None:
    """The keys as integers in the same order, if every key is a linkage key; else None."""
    if keys.null_count() or not keys.str.contains(_LINKAGE_KEY).all():
        return None
    return keys.str.slice(2).str.to_integer(base=16, dtype=pl.Int128)


def _people(
    linked: pl.DataFrame,
    features: PersonFeatures,
    priority: dict[str, int],
    bits: dict[str, int],
    rows: pl.Expr = pl.lit(True),  # noqa: B008 - an immutable expression
) -> pl.DataFrame:
    """One row per person of `linked`'s `rows` (which hold every record of each of their
    persons): the base columns, attributes and indicators."""
    numbers = _key_numbers(linked.get_column("person_key"))
    text = [] if numbers is None else [_KEY_TEXT]
    if numbers is not None:  # one partition's keys at a time: 16 bytes a record
        linked = linked.with_columns(
            pl.col("person_key").alias(_KEY_TEXT), numbers.alias("person_key")
        )
        del numbers
    # A column no record holds (its department delivered none of it) reads as null.
    read = {a.name: a.dtype for a in features.attributes}
    for indicator in features.indicators:
        for name in pl.sql_expr(indicator.rule).meta.root_names():
            read.setdefault(name, pl.Null)
    linked = linked.with_columns(
        pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in read.items() if name not in linked.columns
    )
    columns, aggregations = _per_department(features)
    # Sorted by person, then by how trusted the department is: the groups come out in person
    # key order and each value is taken from the most trusted record that has one. Only the
    # columns read here are sorted.
    ranked = linked.select(
        "person_key", *text, "household_key", "age", "sex", "ethnicity", "lsoa", "department",
        "row_number",
        pl.col("department").replace_strict(priority, default=len(priority)).alias("_rank"),
        pl.col("department").replace_strict(bits, return_dtype=pl.Int64).alias(_HELD),
        *columns,
    ).filter(rows).sort("person_key", "_rank", "row_number")
    # Within a person, each department's records are in extract (row number) order.
    return ranked.group_by("person_key", maintain_order=True).agg(
        *(pl.col(name).first() for name in text),
        pl.col("household_key").drop_nulls().first(),
        pl.col("age").drop_nulls().first().cast(pl.String).fill_null(AGE_UNKNOWN),
        pl.col("sex").drop_nulls().first().fill_null(SEX_UNKNOWN),
        pl.col("ethnicity").drop_nulls().first().fill_null(ETHNICITY_NOT_STATED),
        pl.col("lsoa").drop_nulls().first(),
        pl.col(_HELD).bitwise_or(),  # the departments, as bits: listed when finished
        *aggregations,
    )


def build_population(
    linked: pl.DataFrame,
    features: PersonFeatures | None = None,
    partitions: int | None = None,
    removed: pl.Series | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, PopulationCounts]:
    """Collapse linked records to residents.

    Returns (population, incomplete, counts): `population` has one row per resident with
    person_key, household_key, age (text: whole years or "unknown"), sex, ethnicity, lsoa,
    departments (sorted list), household_departments, then the declared person attributes,
    known_to_<department> flags, indicators (one yes/no column each, the list of those held
    and their count); `incomplete` lists the person keys with no area. Residents are built
    `partitions` at a time (by default one per PARTITION_RECORDS records); the result does not
    depend on it. Records of the persons in `removed` (opt-outs) are left out.

    In three steps, `split_records`, `residents_of` and `finish_population`, so that a caller
    can drop the linked records once they are split (the flow does): each partition's records
    are then freed as its residents are built (10M records: about 1 GB).
    """
    records = split_records(linked, partitions, removed)
    return finish_population(residents_of(records, features), features)


@dataclass
class Records:
    """The linked records in partitions by person-key range, every record of a person in one,
    opt-outs left out."""

    partitions: list[pl.DataFrame]
    records: int
    bits: dict[str, int]  # department -> its bit in each resident's `_HELD`
    # With one partition, the whole of `linked` and which of its records are kept: picked as
    # they are read (1M records: 0.9 GB at the peak, 1.3 GB copying them first).
    kept: pl.Series | None = None


def split_records(
    linked: pl.DataFrame, partitions: int | None = None, removed: pl.Series | None = None
) -> Records:
    """The first step of `build_population`: each partition copied out once (cheaper than
    picking its rows from every record at each step: 10M records, 6 s and 0.4 GB)."""
    kept = None
    if removed is not None and removed.len():
        kept = ~linked.get_column("person_key").is_in(removed.implode())
    records = linked.height if kept is None else int(kept.sum())
    parts = partitions or partitions_for(records)
    bits = _department_bits(linked.get_column("department"))
    if parts == 1:
        return Records([linked], records, bits, kept)
    part = person_partition(linked.get_column("person_key"), parts)
    return Records(
        [linked.filter(part == i if kept is None else kept & (part == i)) for i in range(parts)],
        records,
        bits,
    )


@dataclass
class Residents:
    """Residents built from the linked records, partition by partition, not yet finished."""

    partitions: list[pl.DataFrame]
    records: int
    bits: dict[str, int]  # department -> its bit in each resident's `_HELD`


def residents_of(records: Records, features: PersonFeatures | None = None) -> Residents:
    """The second step of `build_population`: one row per resident, by partition. Takes the
    partitions out of `records`, so each one's records are freed once its residents are built
    (10M records: the link step's peak 5,449 -> 4,852 MiB)."""
    features = features or PersonFeatures()
    priority = {dept: i for i, dept in enumerate(features.priority)}
    rows = pl.lit(True) if records.kept is None else pl.lit(records.kept)
    built = []
    while records.partitions:
        part = records.partitions.pop(0)
        built.append(_people(part, features, priority, records.bits, rows))
    return Residents(built, records.records, records.bits)


def finish_population(
    residents: Residents, features: PersonFeatures | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, PopulationCounts]:
    """The last step of `build_population`; takes the partitions out of `residents`."""
    features = features or PersonFeatures()
    built = residents.partitions
    # How many departments know each household: its members may sit in different partitions.
    # Each member's departments are bits of one number (exploding their lists held 10M rows).
    members = pl.concat([people.select("household_key", _HELD) for people in built])
    household_departments = (
        members.filter(pl.col("household_key").is_not_null())
        .group_by("household_key")
        .agg(
            pl.col(_HELD).bitwise_or().bitwise_count_ones().cast(pl.Int64)
            .alias("household_departments")
        )
    )
    # Every resident's, in one join, then sliced to each partition: a join per partition
    # built the households' table each time (7M residents: finishing 7.3 s -> 6.1 s).
    of_resident = members.join(
        household_departments, on="household_key", how="left", maintain_order="left"
    ).get_column("household_departments")
    # Each resident's sorted list of departments, from the few department sets that occur.
    held = members.get_column(_HELD).unique()
    del members
    lists = pl.DataFrame(
        {
            _HELD: held,
            "departments": [
                [d for d, bit in sorted(residents.bits.items()) if mask & bit]
                for mask in held.to_list()
            ],
        },
        schema={_HELD: pl.Int64, "departments": pl.List(pl.String)},
    )
    # Each partition finished and its raw rows dropped before the next: one copy of the
    # residents in memory, not one per step (7M residents: the build's peak 8.0 -> 6.8 GB).
    population, incomplete = [], []
    people_total = 0
    while built:
        people = built.pop(0).join(lists, on=_HELD, how="left", maintain_order="left")
        people = _finished(
            people.with_columns(of_resident.slice(people_total, people.height)), features
        )
        people_total += people.height
        complete = pl.col("lsoa").is_not_null()
        population.append(people.filter(complete))
        incomplete.append(people.filter(~complete).select("person_key"))
        del people
    population = pl.concat(population)
    incomplete = pl.concat(incomplete)
    counts = PopulationCounts(
        records=residents.records,
        people=people_total,
        households=household_departments.height,
        people_incomplete=incomplete.height,
    )
    return population, incomplete, counts


def _finished(people: pl.DataFrame, features: PersonFeatures) -> pl.DataFrame:
    """A partition's residents with every published column, in their published order: base,
    attributes, known_to_<department>, indicators (still in person key order)."""
    people = people.drop(_HELD)
    if _KEY_TEXT in people.columns:
        people = people.with_columns(pl.col(_KEY_TEXT).alias("person_key")).drop(_KEY_TEXT)
    names = [i.name for i in features.indicators]
    base = [*PEOPLE_COLUMNS, "household_departments"]
    attributes = [c for c in people.columns if c not in base and c not in names]
    people = people.select(
        *base,
        *attributes,
        *(pl.col("departments").list.contains(d).alias(f"known_to_{d}")
          for d in features.departments),
        *(pl.col(n).fill_null(False) for n in names),
    )
    return _with_indicator_list(people, names)


# Up to this many indicators, each resident's list of indicators held is looked up by the bit
# pattern of their yes/no columns (2^n rows), instead of built per resident (much slower).
_LOOKUP_INDICATORS = 10


def _with_indicator_list(people: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Add `indicators` (the names held, in declared order) and `indicator_count`."""
    count = pl.sum_horizontal([pl.col(n).cast(pl.Int64) for n in names] or [pl.lit(0)])
    if not names or len(names) > _LOOKUP_INDICATORS:
        return people.with_columns(
            indicators=pl.concat_list(
                [pl.when(pl.col(n)).then(pl.lit(n)) for n in names] or [pl.lit(None, pl.String)]
            ).list.drop_nulls(),
            indicator_count=count.cast(pl.Int64),
        )
    patterns = range(2 ** len(names))
    lookup = pl.DataFrame(
        {
            "_held": list(patterns),
            "indicators": [[n for i, n in enumerate(names) if m >> i & 1] for m in patterns],
        },
        schema={"_held": pl.Int64, "indicators": pl.List(pl.String)},
    )
    held = pl.sum_horizontal([pl.col(n).cast(pl.Int64) * (1 << i) for i, n in enumerate(names)])
    return (
        people.with_columns(held.alias("_held"))
        .join(lookup, on="_held", how="left", maintain_order="left")
        .drop("_held")
        .with_columns(indicator_count=count.cast(pl.Int64))
    )

