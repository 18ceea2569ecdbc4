"""Every deployment in prefect.yaml points at a flow that loads, and the deployments are the ones
a data engineer expects: one ingestion per department on its contract's schedule, one release
build at a time, no demo parameters outside the demo. tests/functional/test_prefect_server.py
deploys to a real server and lets a schedule fire."""

from pathlib import Path

import pytest
import yaml

from schemas.contract import load_contracts

REPO = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((REPO / "prefect.yaml").read_text())
DEPLOYMENTS = PROJECT["deployments"]
BY_NAME = {d["name"]: d for d in DEPLOYMENTS}


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_deployment_entrypoint_loads(deployment, monkeypatch):
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(REPO)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    accepted = set(flow.parameters.properties)
    # Parameters in prefect.yaml must be ones the flow accepts.
    assert set(deployment.get("parameters", {})) <= accepted
    if deployment["name"] != "demo":
        assert not {"demo", "demo_approval"} & accepted, "demo parameters on a production flow"
        assert not (deployment.get("parameters") or {}).get("demo")


def test_each_department_has_an_ingestion_deployment_on_its_contracts_schedule():
    from flows.deployments import TIMEZONE, ingestion_cron

    contracts = load_contracts(REPO / "data_contracts")
    ingestion = {
        d["parameters"]["department"]: d
        for d in DEPLOYMENTS
        if d["entrypoint"].endswith(":ingest_department")
    }
    assert set(ingestion) == set(contracts)
    for department, contract in contracts.items():
        (schedule,) = ingestion[department]["schedules"]
        assert schedule == {"cron": ingestion_cron(contract), "timezone": TIMEZONE}, department


def test_release_builds_run_one_at_a_time_monthly_and_when_every_department_is_fresh():
    from flows.deployments import DATA_ROOT_RESOURCE, FRESH_EVENT

    build = BY_NAME["release-build"]
    assert build["concurrency_limit"]["limit"] == 1
    assert build["schedules"][0]["timezone"] == "Europe/London"
    (trigger,) = build["triggers"]
    assert trigger["expect"] == [FRESH_EVENT]
    assert trigger["match"] == {"prefect.resource.id": DATA_ROOT_RESOURCE}


def test_workers_run_the_deployed_commit_and_read_the_data_root_where_they_run():
    (step,) = PROJECT["pull"]
    clone = step["prefect.deployments.steps.git_clone"]
    assert clone["commit_sha"] == "{{ $COHORTSHARE_COMMIT }}"
    # `{{ $VAR }}` is resolved at deploy time: nothing about the worker's machine may use it.
    text = (REPO / "prefect.yaml").read_text()
    assert "COHORTSHARE_HOME" not in text and "COHORTSHARE_ROOT }}" not in text


def test_lateness_is_checked_every_morning_after_the_ingestion_runs():
    from flows.deployments import TIMEZONE

    check = BY_NAME["freshness-check"]
    assert check["entrypoint"] == "flows/deployments.py:check_freshness"
    assert check["schedules"] == [{"cron": "0 8 * * *", "timezone": TIMEZONE}]
