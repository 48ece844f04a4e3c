"""The demo campaign end to end on the secured stack, every role on its own principal: the load generator
writes the input, the app (SCRAM user + Redis ACL user) processes it, the operator verifies exactly-once
from the committed outputs; then no password appears in any log line or report of the run."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from clickcash.cluster.local.stack import LocalStack
from clickcash.cluster.topics import ensure_topics
from clickcash.cluster.verify import verify
from clickcash.loadtest.traffic.campaign import CampaignGenerator, CampaignMix
from clickcash.loadtest.traffic.campaign_run import produce_events
from tests.integration._harness import running_app, wait_for_drain
from tests.integration.secure.conftest import RoleSettings

EVENTS = 600


def _ray_log_dirs() -> list[Path]:
    try:
        node = ray._private.worker.global_worker.node
        return [Path(node.get_session_dir_path())]
    except AttributeError:  # Ray's layout changed: the stack's and the run's own logs are still grepped
        return []


def _log_files(roots: list[Path], skip: set[Path]) -> list[Path]:
    files = []
    for root in roots:
        for path in root.rglob("*"):
            if (
                path.is_file()
                and not any(path.is_relative_to(s) for s in skip)
                and path.stat().st_size < 64 << 20
            ):
                files.append(path)
    return files


def test_campaign_runs_exactly_once_on_the_secured_stack_and_leaks_no_secret(
    secure_stack: LocalStack,
    role_settings: RoleSettings,
    ray_session: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    pipeline = {"shards": 2, "shard_num_cpus": 0.1, "router_num_cpus": 0.1}
    names = {"group_id": "clickcash", "transactional_id_prefix": "clickcash"}
    app = role_settings("app", pipeline=pipeline, kafka=names, ray={"namespace": "secure-campaign"})
    operator = role_settings("operator", kafka=names)
    loadgen = role_settings("loadgen")
    ensure_topics(operator, partitions=2, replication_factor=1)

    generator = CampaignGenerator(CampaignMix(customers=50), seed=11, run_id="secure")
    produce_events(loadgen, generator, EVENTS)
    with running_app(app) as running:
        wait_for_drain(app, running)
    report = verify(operator)
    print(report.render())
    assert report.ok, report.render()
    assert report.inputs >= EVENTS and report.missing == 0 and report.duplicates == 0

    # no secret in any log line or report: stack logs, Ray's session logs, this run's output
    secure = secure_stack.secure
    assert secure is not None
    creds = secure.credentials
    secrets = [*creds.kafka_passwords.values(), *creds.redis_passwords.values(), creds.redis_admin_password]
    work = secure.dir.parent
    skip = {secure.dir, *work.rglob("redis.conf")}  # where the secrets are kept, on purpose (mode 0600)
    files = _log_files([work, *_ray_log_dirs()], skip)
    assert any(f.name == "server.log" for f in files) and any(f.name == "redis.log" for f in files)
    out, err = capfd.readouterr()
    texts = {"captured stdout/stderr": out + err, "verify report": report.render()}
    for f in files:
        texts[str(f)] = f.read_text(errors="replace")
    leaks = [(where, s[:4]) for where, text in texts.items() for s in secrets if s in text]
    assert leaks == [], f"secrets found in {leaks}"
