"""Operated as a data engineer would, against a real Prefect server on 127.0.0.1.

One server for the module (`prefect server start` from the project's environment, a private
PREFECT_HOME, a free loopback port, basic authentication on). On it:
- the documented commands create the work pool, keep the key in a Secret block and deploy the
  release build from the project's prefect.yaml; a schedule creates a run, a process worker
  clones the deployed commit and completes it, and the release is staged;
- the API refuses clients without the auth string (the Secret block holds the key);
- two `cohortshare run` processes started together process each delivery once and stage one
  release: the second waits for the data root's lock, then finds nothing changed.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from transforms.intake import DeliveryRegistry

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
POOL = "council-data-pool"
RESIDENTS = 1500
SERVER_START_SECONDS = 150
RUN_SECONDS = 240


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prefect(*args: str, env: dict, cwd: Path = REPO, timeout: int = 180):
    return subprocess.run(
        [PYTHON, "-m", "prefect", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True,
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Prefect server on a free loopback port; yields the environment its clients need."""
    base = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    auth = f"operator:{secrets.token_hex(16)}"
    home = base / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PREFECT_HOME": str(base / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        # The server's half and the clients' half of basic authentication.
        "PREFECT_SERVER_API_AUTH_STRING": auth,
        "PREFECT_API_AUTH_STRING": auth,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # Schedule every second instead of every minute, and let the worker poll every second.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        # Services this test does not use: less for a busy machine to run.
        "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "false",
    }
    env.pop("COHORTSHARE_KEY", None)
    env.pop("COHORTSHARE_KEY_SKIP_PREFECT", None)
    log = (base / "server.log").open("w")
    process = subprocess.Popen(
        [PYTHON, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (base / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Prefect server did not start"
            time.sleep(0.5)
        print(f"real server: up in {time.monotonic() - deadline + SERVER_START_SECONDS:.0f} s")
        # The documented set-up: the work pool, and the key in a Secret block.
        _prefect("work-pool", "create", POOL, "--type", "process", env=env)
        subprocess.run(
            [PYTHON, "-m", "flows.cli", "key", "init", "--prefect-block",
             "cohortshare-pseudonymisation-key"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=180, check=True,
        )
        yield env
    finally:
        _stop(process)
        log.close()


def _api(env: dict, method: str, path: str, auth: bool = True, **kwargs) -> httpx.Response:
    user, _, password = env["PREFECT_API_AUTH_STRING"].partition(":")
    return httpx.request(
        method,
        env["PREFECT_API_URL"] + path,
        auth=(user, password) if auth else None,
        timeout=30,
        **kwargs,
    )


DEPLOYED_POLICY = "policy-of-the-deployed-commit"


def _checkout(target: Path) -> str:
    """The working tree as a git repository of its own: workers clone it at this commit. Its
    disclosure policy has its own name, so the report shows which code and contracts ran."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    policy = target / "data_contracts" / "disclosure_policy.yaml"
    policy.write_text(policy.read_text().replace("name: council-default-2026",
                                                 f"name: {DEPLOYED_POLICY}"))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-qm", "deployed"], cwd=target, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=target, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_a_schedule_fires_and_a_worker_stages_the_release(server, tmp_path):
    from transforms.synthetic import generate_council

    started = time.monotonic()
    root = tmp_path / "council"
    generate_council(root, RESIDENTS, seed=5, extract_date=date.today())
    repository = tmp_path / "repository"
    commit = _checkout(repository)
    deploy_env = {
        **server,
        "COHORTSHARE_REPOSITORY": str(repository),
        "COHORTSHARE_COMMIT": commit,
    }
    # The project's prefect.yaml, plus a 5-second interval so the test need not wait a month.
    _prefect("--no-prompt", "deploy", "--name", "release-build", "--interval", "5",
             env=deploy_env)
    deployed = time.monotonic()
    deployment = _api(server, "GET", "/deployments/name/release-build/release-build").json()
    clone = deployment["pull_steps"][0]["prefect.deployments.steps.git_clone"]
    assert clone == {"repository": str(repository), "commit_sha": commit}
    assert not {"demo", "demo_approval"} & set(deployment["parameter_openapi_schema"]["properties"])
    assert deployment["global_concurrency_limit"]["limit"] == 1

    worker_env = {**server, "COHORTSHARE_ROOT": str(root)}
    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [PYTHON, "-m", "prefect", "worker", "start", "--pool", POOL, "--limit", "1"],
        env=worker_env, cwd=tmp_path, stdout=worker_log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        run = _wait_for_a_finished_run(server, deployment["id"])
    finally:
        _stop(worker)
        worker_log.close()
    log = (tmp_path / "worker.log").read_text()
    assert run["state_type"] == "COMPLETED", log[-4000:]
    assert run["auto_scheduled"], "the run was not created by the schedule"

    staged = [p for p in (root / "staging").iterdir() if not p.name.startswith(".")]
    assert len(staged) == 1
    release = staged[0].name
    assert sorted(p.suffix for p in staged[0].iterdir()) and all(
        p.suffix == ".parquet" for p in staged[0].iterdir()
    )
    report = json.loads((root / "reports" / release / "anonymisation_report.json").read_text())
    assert len(DeliveryRegistry(root).all()) == 6  # five departments and the opt-out register
    # The worker ran the deployed commit from its clone, not this checkout.
    assert report["policy"]["name"] == DEPLOYED_POLICY
    print(f"real server: deployed in {deployed - started:.0f} s, scheduled run completed "
          f"{time.monotonic() - deployed:.0f} s later")


def _wait_for_a_finished_run(env: dict, deployment_id: str) -> dict:
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        runs = _api(
            env, "POST", "/flow_runs/filter",
            json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}},
        ).json()
        finished = [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]
        if finished:
            return finished[0]
        time.sleep(1)
    raise AssertionError(f"no scheduled run finished within {RUN_SECONDS} s: {runs}")


def test_the_api_and_the_key_in_its_secret_block_refuse_unauthenticated_clients(server):
    query = {"block_documents": {"name": {"any_": ["cohortshare-pseudonymisation-key"]}}}
    denied = _api(server, "POST", "/block_documents/filter", auth=False, json=query)
    assert denied.status_code == 401
    allowed = _api(server, "POST", "/block_documents/filter", json=query)
    assert allowed.status_code == 200 and len(allowed.json()) == 1
    # Only the health probe answers without it (load balancers and orchestrators need it).
    assert _api(server, "GET", "/health", auth=False).status_code == 200
    assert _api(server, "POST", "/variables/filter", auth=False, json={}).status_code == 401


def test_two_runs_at_once_process_each_delivery_once_and_stage_one_release(server, tmp_path):
    from transforms.synthetic import generate_council

    root = tmp_path / "council"
    generate_council(root, RESIDENTS, seed=9, extract_date=date.today())
    command = [PYTHON, "-m", "flows.cli", "run", "--root", str(root), "--wait", "300"]
    runs = [
        subprocess.Popen(command, env=server, cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=RUN_SECONDS) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]

    recorded = [o.delivery_id for o in DeliveryRegistry(root).all()]
    assert len(recorded) == len(set(recorded)) == 6, "a delivery was processed twice"
    staged = [p for p in (root / "staging").iterdir() if not p.name.startswith(".")]
    assert len(staged) == 1
    said = "".join(out + err for out, err in outputs)
    assert "No input changed since release" in said
    assert "busy" in said and "waiting up to 300 s" in said


def test_an_overdue_or_missing_department_is_named_in_an_event_and_a_failed_run(server, tmp_path):
    """The lateness alert: the freshness check, run against the server, records one
    `cohortshare.department.overdue` event per late department (department and dates) and
    fails naming them; a fresh department raises nothing."""
    import polars as pl

    from flows.deployments import OVERDUE_EVENT
    from schemas.contract import load_contracts
    from schemas.delivery import DeliveryOutcome
    from transforms.identity import write_tokens

    root = tmp_path / "council"
    today = date.today()
    housing_newest = today - timedelta(days=7 + 14 + 9)  # weekly, 14 days' latency: 9 days late
    registry = DeliveryRegistry(root)
    for n, department in enumerate(sorted(load_contracts(REPO / "data_contracts"))):
        if department == "childrens_services":
            continue  # never delivered
        extract = housing_newest if department == "housing" else today
        outcome = DeliveryOutcome(
            delivery_id=f"{n:x}" * 64, department=department,
            file_name=f"{department}_{extract:%Y%m%d}.csv",
            contract_id=f"urn:cohortshare:contract:{department}", contract_version="1.0.0",
            extract_date=extract, status="accepted", rows_received=1, rows_accepted=1,
            rows_quarantined=0,
        )
        write_tokens(root, outcome, pl.DataFrame({"x": [1]}), "key-1", {})
        registry.record(outcome)
    started = datetime.now(UTC).isoformat()

    check = subprocess.run(
        [PYTHON, "-c", "from flows.deployments import check_freshness; "
         f"check_freshness(root={str(root)!r})"],
        env=server, cwd=REPO, capture_output=True, text=True, timeout=RUN_SECONDS,
    )
    said = check.stdout + check.stderr
    assert check.returncode != 0, said[-3000:]
    overdue = housing_newest + timedelta(days=7)
    assert "NoDataError: 2 of 6 department(s) overdue: childrens_services: no accepted " in said
    assert f"housing: extract of {overdue} overdue since" in said

    events = _events_since(server, OVERDUE_EVENT, started, expected=2)
    by_department = {e["resource"]["prefect.resource.name"]: e for e in events}
    assert set(by_department) == {"housing", "childrens_services"}
    housing = by_department["housing"]
    assert housing["resource"]["prefect.resource.id"] == "cohortshare.department.housing"
    assert housing["payload"]["overdue_extract"] == overdue.isoformat()
    assert housing["payload"]["newest_extract"] == housing_newest.isoformat()
    assert by_department["childrens_services"]["payload"]["status"] == "missing"

    runs = _api(server, "POST", "/flow_runs/filter",
                json={"flows": {"name": {"any_": ["freshness-check"]}}}).json()
    (run,) = runs
    assert run["state_type"] == "FAILED"
    assert "housing: extract of" in run["state"]["message"]


def _events_since(env: dict, name: str, since: str, expected: int) -> list[dict]:
    """Events are written by the server's event persister in batches: poll briefly."""
    deadline = time.monotonic() + 30
    while True:
        found = _api(env, "POST", "/events/filter", json={
            "filter": {"event": {"name": [name]}, "occurred": {"since": since}}, "limit": 50,
        }).json()["events"]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)
