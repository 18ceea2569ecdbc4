"""Release: independent gates, staging and publishing (Parquet and the DuckDB catalogue), the
anonymisation report and the audit log. Only this stage imports DuckDB. Its modules are public:
each is a separate concern the flows call directly.
"""

PUBLIC_MODULES = (
    "audit", "catalogue", "decisions", "differencing", "gates", "history", "magnitude_audit",
    "notice", "outputs", "report",
)
