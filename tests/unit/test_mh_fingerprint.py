"""The fingerprint of an ``mh`` service's table inputs, in `ipvsd.mh`, in the status and on
/metrics (issue 15 part 3: directors compare it; docs/consistent-hashing.md)."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ipvsd.config import parse_config
from ipvsd.control.status_json import from_json, to_json
from ipvsd.daemon.status import status_document_steps
from ipvsd.metrics.ipvs import IpvsExporter
from ipvsd.mh import known_last_weights, table_fingerprint
from ipvsd.model import (
    Dest,
    DestAttrs,
    DestKey,
    Family,
    ForwardMethod,
    Protocol,
    ServiceAttrs,
    ServiceKey,
    Table,
    make_service,
)
from ipvsd.steps import run_steps
from tests.unit.test_daemon import REAL_30, REAL_40, WEB, Harness, running
from tests.unit.test_daemon_reload import free_port, scrape

A, B, C = (DestKey(ip_address(f"10.0.1.{i}"), 80) for i in (1, 2, 3))
VIP = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.100"), 80)
CONFIG = parse_config(
    """\
metrics: {listen: null}
ipvs:
  services:
    - address: 10.0.0.100
      port: 80
      scheduler: mh
      scheduler_flags: [mh-fallback]
      forward: dr
      reals:
        - {address: 10.0.1.1, port: 80, weight: 2}
        - {address: 10.0.1.2, port: 80, weight: 1}
        - {address: 10.0.1.3, port: 80, weight: 1}
""",
    default_node_name="n1",
)


def test_order_and_weights_name_the_table_and_weight_0_takes_no_slot() -> None:
    base = table_fingerprint([(A, 2), (B, 1), (C, 1)])
    assert table_fingerprint([(A, 2), (B, 1), (C, 1)]) == base
    assert table_fingerprint([(B, 1), (A, 2), (C, 1)]) != base  # list order
    assert table_fingerprint([(A, 1), (B, 1), (C, 1)]) != base  # a weight
    assert table_fingerprint([(A, 2), (B, 1)]) != base  # a real
    assert table_fingerprint([(A, 2), (B, 1), (C, 0)]) == table_fingerprint([(A, 2), (B, 1)])


def test_known_last_weights_are_the_planners_over_the_configured_ones() -> None:
    configured = {A: 2, B: 1}
    assert known_last_weights(configured, None) is configured
    planned = make_service(VIP, ServiceAttrs("mh"), last_weights={B: 3, C: 1})
    assert known_last_weights(configured, planned) == {A: 2, B: 3, C: 1}
    assert configured == {A: 2, B: 1}
    assert known_last_weights(configured, make_service(VIP, ServiceAttrs("mh"))) is configured


def _kernel(*reals: tuple[DestKey, int]) -> Table:
    dests = [Dest(key, DestAttrs(ForwardMethod.DR, weight)) for key, weight in reals]
    return Table.of([make_service(VIP, ServiceAttrs("mh"), dests)])


def _fingerprint(kernel: Table) -> str | None:
    doc = run_steps(
        status_document_steps(
            node="n1", version="0", config=CONFIG, kernel=kernel, health={}, drained=set(), vrrp=()
        )
    )
    (service,) = doc.services
    assert from_json(to_json(doc)).services[0].mh_fingerprint == service.mh_fingerprint
    return service.mh_fingerprint


def test_the_status_names_the_kernels_table() -> None:
    listed = _fingerprint(_kernel((A, 2), (B, 1), (C, 1)))
    assert listed == table_fingerprint([(A, 2), (B, 1), (C, 1)])
    # Another director whose kernel lists the reals in another order: it differs.
    assert _fingerprint(_kernel((C, 1), (B, 1), (A, 2))) != listed
    # A real drained to 0 keeps its last weight, its slots and the fingerprint.
    assert _fingerprint(_kernel((A, 2), (B, 0), (C, 1))) == listed


def test_other_schedulers_and_absent_services_have_none() -> None:
    rr = CONFIG.model_copy(
        update={
            "ipvs": CONFIG.ipvs.model_copy(
                update={
                    "services": (CONFIG.ipvs.services[0].model_copy(update={"scheduler": "rr"}),)
                }
            )
        }
    )
    doc = run_steps(
        status_document_steps(
            node="n1",
            version="0",
            config=rr,
            kernel=_kernel((A, 2)),
            health={},
            drained=set(),
            vrrp=(),
        )
    )
    assert doc.services[0].mh_fingerprint is None
    assert _fingerprint(Table.of([])) is None  # not in the kernel


# --- /metrics: ipvsd_service_mh_table_info -------------------------------------------------


def _families(table: Table, last_weights: dict[DestKey, int]) -> dict[str, list[Sample]]:
    exporter = IpvsExporter(lambda: table, last_weights=lambda key: last_weights)
    text = exporter.text().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_carry_the_fingerprint_of_each_mh_service_only() -> None:
    rr = ServiceKey(Family.INET, Protocol.TCP, ip_address("10.0.0.100"), 443)
    drained = _kernel((A, 2), (B, 0), (C, 1))
    table = Table.of(
        [*drained.services.values(), make_service(rr, ServiceAttrs("rr"), [Dest(A, DestAttrs())])]
    )
    (sample,) = _families(table, {A: 2, B: 1, C: 1})["ipvsd_service_mh_table_info"]
    assert sample.name == "ipvsd_service_mh_table_info"
    assert sample.value == 1
    assert sample.labels == {
        # B drained: counted with its configured weight, as the status does.
        "fingerprint": table_fingerprint([(A, 2), (B, 1), (C, 1)]),
        "local_address": "10.0.0.100",
        "local_mark": "",
        "local_port": "80",
        "proto": "TCP",
    }
    assert sample.labels["fingerprint"] == _fingerprint(drained)


def test_no_mh_family_without_mh_services() -> None:
    table = Table.of([make_service(VIP, ServiceAttrs("wlc"), [Dest(A, DestAttrs())])])
    assert "ipvsd_service_mh_table_info" not in _families(table, {})


# --- the daemon's fingerprints and the kernel's last weights -----------------------------

SORRY = DestKey(ip_address("192.168.1.99"), 80)


def _director(sock: Path, port: int, weight_40: int = 1, *, sorry: bool = True) -> str:
    """An mh service with mh-fallback, an inhibited sorry server (unless not `sorry`) and
    quorum 1 (the sorry server in use once both reals are drained), /metrics on `port`."""
    text = f"""\
node_name: director1
state_dir: {sock.parent / "state"}
control: {{socket: {sock}}}
metrics: {{listen: '127.0.0.1:{port}'}}
ipvs:
  services:
    - address: 192.168.1.200
      port: 80
      scheduler: mh
      scheduler_flags: [mh-fallback]
      quorum: 1
      sorry_server: {{address: 192.168.1.99, inhibit: true}}
      reals:
        - {{address: 192.168.1.30, port: 80, weight: 2}}
        - {{address: 192.168.1.40, port: 80, weight: {weight_40}}}
"""
    return (
        text
        if sorry
        else text.replace("      sorry_server: {address: 192.168.1.99, inhibit: true}\n", "")
    )


def _kernels_table(h: Harness) -> str:
    """What the kernel built the service's Maglev table from: each dest's last weight, in
    its list order (`FakeIpvs.last_weights`; a dump does not say it)."""
    return table_fingerprint(h.kernel.ipvs.last_weights(WEB).items())


async def _exported(h: Harness, port: int) -> tuple[str | None, str | None]:
    """The service's fingerprint on /metrics and in the status."""
    page = await scrape(port)
    (metric,) = [
        sample
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == "ipvsd_service_mh_table_info"
    ]
    (status,) = (await h.daemon.view.status()).services
    return metric.labels["fingerprint"], status.mh_fingerprint


async def test_an_inhibited_sorry_server_counts_with_the_last_weight_it_was_added_at(
    tmp_path: Path,
) -> None:
    # The planner adds the waiting sorry server at 1 and zeroes it (mh-fallback: its
    # slots exist, so that in use once or never is one table); the configured weights
    # do not name it, and the fingerprint left it out.
    port, sock = free_port(), tmp_path / "ipvsd.sock"
    async with running(tmp_path, _director(sock, port)) as h:
        assert h.weights(WEB) == {SORRY: 0, REAL_40: 1, REAL_30: 2}
        assert h.kernel.ipvs.last_weights(WEB)[SORRY] == 1
        table = _kernels_table(h)
        assert await _exported(h, port) == (table, table)
        # The sorry server in use: the same table, the same fingerprint.
        h.daemon.view.drain(WEB, REAL_30)
        h.daemon.view.drain(WEB, REAL_40)
        await h.settle()
        assert h.weights(WEB) == {SORRY: 1, REAL_40: 0, REAL_30: 0}
        assert _kernels_table(h) == table
        assert await _exported(h, port) == (table, table)


async def test_a_reload_that_changes_a_drained_reals_weight_changes_the_fingerprint(
    tmp_path: Path,
) -> None:
    # The planner raises the drained real to its new weight and zeroes it again: its
    # last weight is the new one, and so is the count of it.
    port, sock = free_port(), tmp_path / "ipvsd.sock"
    async with running(tmp_path, _director(sock, port, sorry=False)) as h:
        h.daemon.view.drain(WEB, REAL_40)
        await h.settle()
        before = _kernels_table(h)
        h.write(_director(sock, port, weight_40=3, sorry=False))
        assert await h.daemon.reload() == []
        await h.settle()
        assert h.weights(WEB)[REAL_40] == 0
        assert h.kernel.ipvs.last_weights(WEB)[REAL_40] == 3
        table = _kernels_table(h)
        assert table != before
        assert await _exported(h, port) == (table, table)
