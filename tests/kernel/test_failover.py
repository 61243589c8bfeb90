"""Two directors running ipvsd, DR and NAT: balancing, InActConn, failover, preemption, drain.

One `lab.reference.ReferenceLab` per variant (module-scoped, ~25 s to start in
UML) goes through the reference scenario in order; the tests below are its
steps and share what earlier steps left (`Story`): the long-lived connection
opened before the failover is checked after it and after the preemption.

The failover bound is issue 6's: requests succeed again within
3 x advert_int + Skew_Time(backup) + 1 s of ``ip link set eth1 down`` on the
master. Connections surviving it need the IPVS connection-sync daemon
(``ipvs.sync_daemon``), which each director's config turns on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lab.reference import (
    ADVERT_INT,
    CLIENT,
    ECHO_PORT,
    NAT_GATEWAY,
    VIP,
    WEB_PORT,
    FailoverReport,
    LongConnection,
    ReferenceLab,
    backend_metric,
    service_of,
    status_json,
)
from lab.scenario import wait_until
from tests.kernel.narrate import say

MASTER, BACKUP = "director1", "director2"


@dataclass(repr=False)
class Story:
    """The lab and what its earlier steps left for the later ones."""

    lab: ReferenceLab
    conn: LongConnection | None = None
    failover: FailoverReport | None = None
    alive_after_failover: bool | None = None
    alive_after_preemption: bool | None = None

    def __repr__(self) -> str:
        conn = f"{self.conn.real}:{self.conn.local_port}" if self.conn else None
        return (
            f"Story({self.lab.variant}, conn={conn}, alive_after_failover="
            f"{self.alive_after_failover}, alive_after_preemption={self.alive_after_preemption})"
        )


@pytest.fixture(scope="module", params=["dr", "nat"])
def story(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Story]:
    workdir = tmp_path_factory.mktemp(request.param)
    with ReferenceLab(request.param, workdir) as lab:
        started = lab.start()
        say(
            request,
            f"{lab.variant}: {MASTER} MASTER and reals healthy {started:.1f} s after ipvsd started",
        )
        story = Story(lab)
        yield story
        if story.conn is not None:
            story.conn.close()


def failover_bound(lab: ReferenceLab, backup: str) -> float:
    """3 x advert_int + Skew_Time of the backup + 1 s."""
    skew = lab.spec.instance_of(VIP).skew_time(backup)
    return 3 * ADVERT_INT + skew + 1


def test_50_requests_all_succeed_and_both_reals_serve(story: Story) -> None:
    lab = story.lab
    before = lab.access_counts()
    replies = lab.curl(50)
    assert [r.status for r in replies] == [200] * 50, replies
    served = {r.real for r in replies}
    assert served == {"real1", "real2"}, served
    logged = lab.access_counts(at_least=before.total() + 50) - before
    assert logged == {"real1": 25, "real2": 25}, logged  # rr, one connection per request


def test_inactconn_on_the_master_in_status_and_metrics(story: Story) -> None:
    lab = story.lab
    assert lab.master() == MASTER
    status = status_json(lab.ipvsd(MASTER, "status", "--json"))
    assert status["node"] == MASTER
    assert [v["state"] for v in status["vrrp"]] == ["MASTER"] * len(status["vrrp"])
    web = service_of(status, VIP, WEB_PORT)
    text = lab.metrics(MASTER)
    for real in web["reals"]:
        # The closed requests linger in IPVS (TIME_WAIT / FIN states) until their timeout.
        assert real["inactive_conns"] > 0, real
        assert real["health"] == "up", real
        inactive = backend_metric(
            text, "ipvs_backend_connections_inactive", VIP, WEB_PORT, real["address"], real["port"]
        )
        assert inactive > 0, (real, inactive)
    backup = status_json(lab.ipvsd(BACKUP, "status", "--json"))
    assert {v["state"] for v in backup["vrrp"]} == {"BACKUP"}
    # The connection-sync daemon follows VI_1, and says so in the metrics.
    assert 'ipvsd_sync_daemon_running{role="master"} 1.0' in text
    assert 'ipvsd_sync_daemon_running{role="backup"} 1.0' in lab.metrics(BACKUP)


def test_long_connection_is_synced_to_the_backup(story: Story) -> None:
    lab = story.lab
    story.conn = lab.long_connection()
    assert story.conn.alive()
    port = story.conn.local_port

    def synced() -> bool:
        return any(
            c.client == CLIENT and c.client_port == port and c.vport == ECHO_PORT
            for c in lab.connections(BACKUP)
        )

    # The sync daemon's master sends its buffer at least every 2 s.
    try:
        wait_until(synced, timeout=8, interval=0.2)
    except AssertionError:
        table = [c for c in lab.connections(BACKUP) if c.vport == ECHO_PORT]
        pytest.fail(
            f"{CLIENT}:{port} -> {VIP}:{ECHO_PORT} not in {BACKUP}'s IPVS table after 8 s "
            f"(is the connection-sync daemon running?); its echo connections: {table}"
        )


def test_link_down_moves_the_vip_and_requests_resume_within_the_bound(
    story: Story, request: pytest.FixtureRequest
) -> None:
    lab = story.lab
    report = lab.failover_gap(lambda: lab.link_down(MASTER))
    story.failover = report
    if story.conn is not None:
        story.alive_after_failover = story.conn.alive()
    bound = failover_bound(lab, BACKUP)
    say(request, f"{lab.variant} failover (eth1 down on {MASTER}), bound {bound:.2f} s:")
    say(request, "  " + report.summary())
    assert lab.holders()[VIP] == BACKUP
    if lab.variant == "nat":
        assert lab.holders()[NAT_GATEWAY] == BACKUP  # the sync group moved the gateway too
    assert report.recovered_after() <= bound, report.summary()
    replies = lab.curl(50)
    assert [r.status for r in replies] == [200] * 50, replies
    assert {r.real for r in replies} == {"real1", "real2"}


def test_long_connection_survives_the_failover(story: Story) -> None:
    assert story.conn is not None, "no long-lived connection was opened"
    assert story.alive_after_failover, (
        f"the echo connection to {story.conn.real} died when the VIP moved to {BACKUP}"
    )


def test_restored_master_preempts(story: Story, request: pytest.FixtureRequest) -> None:
    lab = story.lab
    report = lab.failover_gap(lambda: lab.link_up(MASTER))
    if story.conn is not None:
        story.alive_after_preemption = story.conn.alive()
    say(request, f"{lab.variant} preemption (eth1 up on {MASTER}):")
    say(request, "  " + report.summary())
    assert lab.holders()[VIP] == MASTER
    if lab.variant == "nat":
        assert lab.holders()[NAT_GATEWAY] == MASTER
    replies = lab.curl(20)
    assert [r.status for r in replies] == [200] * 20, replies


def test_long_connection_survives_the_preemption(story: Story) -> None:
    assert story.conn is not None, "no long-lived connection was opened"
    assert story.alive_after_preemption, (
        f"the echo connection to {story.conn.real} died when the VIP came back to {MASTER}"
    )


def test_stopped_nginx_is_drained_and_requests_all_succeed(story: Story) -> None:
    lab = story.lab
    master = lab.master()
    assert master is not None
    check = lab.spec.check
    bound = check.fall * check.interval + check.timeout + 2
    lab.stop_nginx("real1")
    wait_until(lambda: lab.weights(master)["real1"] == 0, timeout=bound, interval=0.2)
    assert lab.weights(master)["real2"] == 1
    replies = lab.curl(20)
    assert [(r.status, r.real) for r in replies] == [(200, "real2")] * 20, replies
    lab.start_nginx("real1")
    wait_until(lambda: lab.weights(master)["real1"] == 1, timeout=bound + 2, interval=0.2)
