"""The one exception tree of Cohort Share.

Every error a user can cause or fix is a `UserError`: the CLI prints it as one line,
`ClassName: message`, and exits with the class's own exit code, with no traceback.
Messages carry file names, column names, rule names, row numbers and counts, never a cell
value of identifiable data (docs/architecture.md, privacy property 1).
"""


class CohortShareError(Exception):
    """Base of every error raised on purpose by Cohort Share."""

    exit_code = 1


class UserError(CohortShareError):
    """Something the user can fix: bad input, configuration, a refused release."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration or declarative file (policy, cohorts, rules) is invalid."""

    exit_code = 3


class ContractError(UserError):
    """A data contract file is invalid; raised before any data is read."""

    exit_code = 4


class DeliveryRejected(UserError):
    """A delivery failed a file-level check and was rejected as a whole.

    The raiser attaches the rejected `outcome` (a schemas.delivery.DeliveryOutcome), the `rule`
    and the `count` of offending rows or columns, so callers can record the rejection.
    """

    exit_code = 5
    outcome = None
    rule: str | None = None
    count: int | None = None


class KeyCustodyError(UserError):
    """The pseudonymisation key is missing, too short or not kept safely."""

    exit_code = 6


class DisclosureError(UserError):
    """A candidate release failed a disclosure check and must not be published."""

    exit_code = 7


class ReleaseError(UserError):
    """A release cannot be approved, published or withdrawn in its current state."""

    exit_code = 8


class NoDataError(UserError):
    """There is nothing to process (no landing extracts, no release)."""

    exit_code = 9


class HierarchyError(UserError):
    """A generalisation hierarchy is invalid or does not cover the data."""

    exit_code = 12


class LinkageError(UserError):
    """Linkage rules are invalid."""

    exit_code = 13


class BusyError(UserError):
    """Another operation holds the data root's lock (a run, an approval, a withdrawal)."""

    exit_code = 14


class ReleaseChanged(UserError):
    """A staged release differs from what its report lists and the officer reviewed (a file
    added, removed or changed after staging): it cannot be approved."""

    exit_code = 15


class AuditLogTampered(UserError):
    """The audit log's hash chain is broken: a line was edited, inserted or removed."""

    exit_code = 16


class PipelineError(CohortShareError):
    """A stage failed for a reason we did not foresee; reported by stage and type only."""

    exit_code = 70
