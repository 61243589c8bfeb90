"""The status contract: its one JSON codec, the tables rendered from it, and its builder.

The point of the typed contract (issue 10) is that the renderers read only
fields the document has; the test that a persistent service shows
``persistent 300`` in ``ipvsd status`` is the bug it fixes.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_address
from pathlib import Path
from typing import Any

import pytest

from ipvsd.config import Config, parse_config
from ipvsd.control.render import format_age, ipvsadm_table, service_line, status_text
from ipvsd.control.status import (
    QuorumStatus,
    RealStatus,
    RunningSyncDaemon,
    ServiceStatus,
    StatsView,
    StatusDocument,
    SyncDaemonStatusView,
    TrackedFileStatus,
    TrackedScriptStatus,
    VrrpStatus,
    services_from_table,
)
from ipvsd.control.status_json import MalformedStatus, from_json, services_to_json, to_json
from ipvsd.daemon.status import VrrpView, status_document_steps
from ipvsd.desired import desired_table
from ipvsd.health.tracker import Health, HealthRecord
from ipvsd.ipvs.sync_daemon import SyncDaemonStatus, SyncTarget
from ipvsd.model import (
    Dest,
    DestAttrs,
    DestCounters,
    DestKey,
    Family,
    ForwardMethod,
    Protocol,
    Service,
    ServiceAttrs,
    ServiceFlag,
    ServiceKey,
    Stats,
    Table,
    fwmark_key,
    make_service,
)
from ipvsd.netlink.wire_daemon import SyncDaemon, SyncState
from ipvsd.steps import run_steps

PACKAGE = Path(__file__).resolve().parents[2] / "ipvsd"
WEB_KEY = ServiceKey(Family.INET, Protocol.TCP, ip_address("192.168.1.200"), 80)

VI_1 = VrrpStatus(
    name="VI_1",
    state="MASTER",
    interface="eth1",
    vrid=51,
    priority=100,
    effective_priority=100,
    virtual_ipaddresses=(IPv4Interface("192.168.1.200/24"),),
)
SINCE = datetime(2026, 3, 1, 12, 3, 4, tzinfo=UTC)
"""A health change, as the status document carries it (UTC, whole seconds)."""


def web(**changes: Any) -> ServiceStatus:
    """``TCP 192.168.1.200:80 rr`` with one real, changed by keyword."""
    service = ServiceStatus(
        address=ip_address("192.168.1.200"),
        port=80,
        protocol=Protocol.TCP,
        fwmark=None,
        family=Family.INET,
        scheduler="rr",
        reals=(real(),),
    )
    return dataclasses.replace(service, **changes)


def real(**changes: Any) -> RealStatus:
    """``192.168.1.30:80`` (nat, weight 1, up), changed by keyword."""
    status = RealStatus(
        address=ip_address("192.168.1.30"),
        port=80,
        forward=ForwardMethod.NAT,
        weight=1,
        configured_weight=1,
        health="up",
        inactive_conns=25,
    )
    return dataclasses.replace(status, **changes)


def document(*services: ServiceStatus) -> StatusDocument:
    return StatusDocument(node="director1", version="9.9.9", vrrp=(VI_1,), services=services)


FWMARK6 = web(
    address=None,
    port=None,
    fwmark=5,
    family=Family.INET6,
    scheduler="wrr",
    reals=(real(address=ip_address("2001:db8::30"), port=80, forward=ForwardMethod.DR),),
    mh_fingerprint="0123456789abcdef",  # only the codec's round trip: any value
)

RICH = StatusDocument(
    node="director1",
    version="9.9.9",
    vrrp=(
        dataclasses.replace(VI_1, master_address=IPv4Address("192.168.1.10")),
        dataclasses.replace(
            VI_1,
            name="VI_2",
            vrid=52,
            state="BACKUP",
            master_address=IPv4Address("192.168.1.20"),
        ),
        dataclasses.replace(
            VI_1,
            name="VI_6",
            vrid=60,
            state="FAULT",
            version=3,
            family="ipv6",
            advert_int=0.25,
            master_adver_int=1.5,
            accept_mode=False,
            virtual_ipaddresses=(IPv6Interface("2001:db8::200/64"),),
            master_address=IPv6Address("fe80::2"),
        ),
    ),
    services=(
        web(
            flags=ServiceFlag.PERSISTENT | ServiceFlag.ONEPACKET,
            persistence_timeout=300,
            persistence_netmask=24,
            persistence_engine="sip",
            stats=StatsView(1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
            reals=(
                real(upper_threshold=100, lower_threshold=50, stats=StatsView(conns=7)),
                real(
                    address=ip_address("192.168.1.31"),
                    weight=0,
                    health="down",
                    health_reason="connection refused",
                    health_since=SINCE,
                    drained=True,
                    in_kernel=False,
                ),
                real(address=ip_address("192.168.1.99"), configured_weight=None, sorry=True),
            ),
        ),
        FWMARK6,
        web(in_kernel=False, protocol=Protocol.UDP, reals=()),
    ),
    sync_daemon=SyncDaemonStatusView(
        vrrp_instance="VI_1",
        interface="eth1",
        sync_id=51,
        wanted="master",
        running=(RunningSyncDaemon("master", "eth1", 51, ip_address("224.0.0.81"), 8848, 1, 1472),),
        error="eth1 flapped",
    ),
)


# --- the codec ----------------------------------------------------------------------------


def test_round_trip() -> None:
    assert from_json(json.loads(json.dumps(to_json(RICH)))) == RICH
    assert from_json(to_json(StatusDocument(node="n", version="v"))) == StatusDocument("n", "v")


def test_the_exact_json_of_a_small_document() -> None:
    assert to_json(document(web())) == {
        "node": "director1",
        "version": "9.9.9",
        "vrrp": [
            {
                "name": "VI_1",
                "state": "MASTER",
                "interface": "eth1",
                "vrid": 51,
                "priority": 100,
                "effective_priority": 100,
                "virtual_ipaddresses": ["192.168.1.200/24"],
                "fault_reason": None,
                "failures": 0,
                "master_address": None,
                "track_scripts": [],
                "track_files": [],
                "version": 2,
                "family": "ipv4",
                "advert_int": 1.0,
                "master_adver_int": None,
                "accept_mode": True,
                "accept_mode_error": None,
            }
        ],
        "services": [
            {
                "address": "192.168.1.200",
                "port": 80,
                "protocol": "tcp",
                "fwmark": None,
                "family": "ipv4",
                "scheduler": "rr",
                "flags": [],
                "persistence_timeout": 0,
                "persistence_netmask": 32,
                "persistence_engine": None,
                "in_kernel": True,
                "stats": None,
                "reals": [
                    {
                        "address": "192.168.1.30",
                        "port": 80,
                        "forward": "nat",
                        "weight": 1,
                        "configured_weight": 1,
                        "health": "up",
                        "health_reason": None,
                        "health_since": None,
                        "health_checks": None,
                        "drained": False,
                        "in_kernel": True,
                        "sorry": False,
                        "active_conns": 0,
                        "inactive_conns": 25,
                        "persistent_conns": 0,
                        "upper_threshold": None,
                        "lower_threshold": None,
                        "stats": None,
                    }
                ],
                "quorum": None,
                "mh_fingerprint": None,
            }
        ],
        "sync_daemon": None,
        "bgp": None,
    }


def test_a_services_quorum_in_json_text_and_back() -> None:
    """Issue 13: quorum state per service; the text shows a lost one under its service."""
    lost = web(quorum=QuorumStatus(up=False, live_weight=1, quorum=4, hysteresis=1))
    encoded = to_json(document(lost))
    assert encoded["services"][0]["quorum"] == {
        "up": False,
        "live_weight": 1,
        "quorum": 4,
        "hysteresis": 1,
    }
    assert from_json(encoded).services[0].quorum == lost.quorum
    assert "  quorum lost: live weight 1, quorum 4" in status_text(document(lost)).splitlines()
    kept = web(quorum=QuorumStatus(up=True, live_weight=2))
    assert "quorum" not in status_text(document(kept))


def test_the_json_of_fwmark_persistence_stats_and_sync() -> None:
    encoded = to_json(RICH)
    persistent, fwmark = encoded["services"][0], encoded["services"][1]
    assert persistent["flags"] == ["persistent", "one-packet"]
    assert persistent["stats"]["conns"] == 1
    assert persistent["stats"]["outbps"] == 10
    assert (fwmark["address"], fwmark["port"], fwmark["fwmark"]) == (None, None, 5)
    assert fwmark["family"] == "ipv6"
    assert encoded["sync_daemon"]["running"] == [
        {
            "state": "master",
            "interface": "eth1",
            "sync_id": 51,
            "mcast_group": "224.0.0.81",
            "mcast_port": 8848,
            "mcast_ttl": 1,
            "sync_maxlen": 1472,
        }
    ]
    assert services_to_json(RICH.services) == encoded["services"]


def test_tracked_scripts_and_their_state_round_trip() -> None:
    tracked = (TrackedScriptStatus("chk_web", "failing"), TrackedScriptStatus("chk_db", "ok"))
    doc = StatusDocument(
        node="director1",
        version="9.9.9",
        vrrp=(dataclasses.replace(VI_1, track_scripts=tracked),),
        services=(),
    )
    data = to_json(doc)
    assert data["vrrp"][0]["track_scripts"] == [
        {"script": "chk_web", "state": "failing"},
        {"script": "chk_db", "state": "ok"},
    ]
    assert from_json(json.loads(json.dumps(data))) == doc


def test_tracked_files_with_their_value_and_weight_round_trip_and_show() -> None:
    scripts = (TrackedScriptStatus("chk_web", "failing"),)
    files = (TrackedFileStatus("/run/lb/prio", 3, -2), TrackedFileStatus("/run/lb/new", None, 1))
    doc = StatusDocument(
        node="director1",
        version="9.9.9",
        vrrp=(dataclasses.replace(VI_1, track_scripts=scripts, track_files=files),),
    )
    data = to_json(doc)
    assert data["vrrp"][0]["track_files"] == [
        {"path": "/run/lb/prio", "value": 3, "weight": -2},
        {"path": "/run/lb/new", "value": None, "weight": 1},  # not read yet
    ]
    assert from_json(json.loads(json.dumps(data))) == doc
    lines = status_text(doc).splitlines()
    assert (
        "VI_1 tracks: script chk_web failing, file /run/lb/prio = 3 (weight -2), "
        "file /run/lb/new = - (weight 1)"
    ) in lines
    assert not [line for line in status_text(document(web())).splitlines() if "tracks:" in line]


def test_why_and_since_when_a_real_is_down_and_who_is_master() -> None:
    down = real(
        weight=0, health="down", health_reason="HTTP 503 (expected 200)", health_since=SINCE
    )
    backup = dataclasses.replace(VI_1, state="BACKUP", master_address=IPv4Address("192.168.1.20"))
    doc = StatusDocument(
        node="director2", version="9.9.9", vrrp=(backup,), services=(web(reals=(down,)),)
    )
    data = to_json(doc)
    encoded = data["services"][0]["reals"][0]
    assert encoded["health_reason"] == "HTTP 503 (expected 200)"
    # RFC 3339 in UTC, whole seconds: what jq's `fromdate` reads.
    assert encoded["health_since"] == "2026-03-01T12:03:04Z"
    assert data["vrrp"][0]["master_address"] == "192.168.1.20"
    assert from_json(json.loads(json.dumps(data))) == doc


def test_a_health_since_in_another_zone_is_decoded_to_utc() -> None:
    data = to_json(document(web()))
    data["services"][0]["reals"][0]["health_since"] = "2026-03-01T13:03:04+01:00"
    assert from_json(data).services[0].reals[0].health_since == SINCE


def test_unknown_keys_are_ignored() -> None:
    encoded = to_json(document(web()))
    encoded["future"] = 1
    encoded["services"][0]["future"] = [1]
    encoded["services"][0]["reals"][0]["future"] = {"x": None}
    encoded["services"][0]["flags"] = ["a-flag-from-the-future"]
    assert from_json(encoded) == document(web())


def test_an_older_document_without_the_extras_decodes_with_their_defaults() -> None:
    encoded = to_json(document(web(), FWMARK6))
    extras = {"family", "flags", "persistence_timeout", "persistence_netmask"}
    extras |= {"persistence_engine", "in_kernel", "stats"}
    for service in encoded["services"]:
        for key in extras:
            del service[key]
        for entry in service["reals"]:
            for key in ("drained", "in_kernel", "sorry", "upper_threshold", "stats"):
                del entry[key]
            del entry["health_reason"], entry["health_since"]
    for instance in encoded["vrrp"]:
        del instance["master_address"], instance["track_scripts"], instance["track_files"]
        del instance["version"], instance["family"], instance["advert_int"]
        del instance["master_adver_int"], instance["accept_mode"], instance["accept_mode_error"]
    del encoded["sync_daemon"]
    decoded = from_json(encoded)
    # Without "family" the address tells it; a fwmark service is taken as IPv4.
    assert decoded == document(web(), dataclasses.replace(FWMARK6, family=Family.INET))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d.pop("node"), "node: missing"),
        (lambda d: d.update(vrrp={}), "vrrp: expected a list, got an object"),
        (
            lambda d: d["vrrp"][0].update(vrid="51"),
            "vrrp[0].vrid: expected an integer, got a string",
        ),
        (
            lambda d: d["vrrp"][0].update(virtual_ipaddresses=["300.1.1.1/24"]),
            "vrrp[0].virtual_ipaddresses[0]: ",
        ),
        (lambda d: d["services"][0].pop("fwmark"), "services[0].fwmark: missing"),
        (
            lambda d: d["services"][0].update(protocol="icmp"),
            "services[0].protocol: 'icmp' is not one of tcp, udp, sctp",
        ),
        (lambda d: d["services"][0].update(family="ipx"), "services[0].family: 'ipx'"),
        (lambda d: d["services"][0].update(reals=[7]), "services[0].reals[0]: expected an object"),
        (
            lambda d: d["services"][0]["reals"][0].update(weight=True),
            "services[0].reals[0].weight: expected an integer, got a boolean",
        ),
        (
            lambda d: d["services"][0]["reals"][0].update(address="192.168.1"),
            "services[0].reals[0].address: ",
        ),
        (
            lambda d: d["services"][0]["reals"][0].update(forward="fast"),
            "services[0].reals[0].forward: 'fast' is not one of nat, dr, tunnel",
        ),
        (lambda d: d["services"][0]["stats"].update(conns=1.5), "services[0].stats.conns: "),
        (
            lambda d: d["services"][0]["reals"][1].update(health_since="yesterday"),
            "services[0].reals[1].health_since: ",
        ),
        (
            lambda d: d["services"][0]["reals"][1].update(health_reason=503),
            "services[0].reals[1].health_reason: expected a string, got an integer",
        ),
        (
            lambda d: d["vrrp"][1].update(master_address="192.168.1.300"),
            "vrrp[1].master_address: ",
        ),
        (lambda d: d["sync_daemon"].update(running=[{}]), "sync_daemon.running[0].state: missing"),
    ],
)
def test_a_malformed_document_is_a_clear_error(damage: Any, message: str) -> None:
    encoded = to_json(RICH)
    damage(encoded)
    with pytest.raises(MalformedStatus, match="^" + message.replace("[", r"\[")):
        from_json(encoded)


def test_a_document_that_is_not_an_object() -> None:
    with pytest.raises(MalformedStatus, match=r"^status: expected an object, got a list$"):
        from_json([])


# --- the human tables -------------------------------------------------------------------------


def real_columns(entry: RealStatus) -> dict[str, str]:
    """The real's row of ``ipvsd status``, by column header, checking the columns line up."""
    lines = status_text(document(web(reals=(entry,)))).splitlines()
    header = next(line for line in lines if "RemoteAddress:Port" in line)
    row = next(line for line in lines if line.startswith("  -> ") and line != header)
    names, cells = header.split()[1:], row.split()[1:]
    for name, cell in zip(names, cells, strict=True):
        assert row.index(cell, header.index(name)) == header.index(name), (name, header, row)
    return dict(zip(names, cells, strict=True))


@pytest.mark.parametrize(
    ("changes", "column", "cell"),
    [
        ({}, "RemoteAddress:Port", "192.168.1.30:80"),
        ({"address": ip_address("2001:db8::30")}, "RemoteAddress:Port", "[2001:db8::30]:80"),
        ({"forward": ForwardMethod.NAT}, "Forward", "Masq"),
        ({"forward": ForwardMethod.DR}, "Forward", "Route"),
        ({"forward": ForwardMethod.TUNNEL}, "Forward", "Tunnel"),
        ({"weight": 0}, "Weight", "0"),
        ({"configured_weight": 70}, "CfgWeight", "70"),
        ({"configured_weight": None}, "CfgWeight", "-"),
        ({"health": "down"}, "Health", "down"),
        ({"health": "unknown"}, "Health", "unknown"),
        ({"drained": True}, "Health", "up,drained"),
        ({"active_conns": 12}, "ActiveConn", "12"),
        ({"inactive_conns": 34}, "InActConn", "34"),
        ({"persistent_conns": 56}, "PersistConn", "56"),
    ],
)
def test_status_real_columns(changes: dict[str, Any], column: str, cell: str) -> None:
    assert real_columns(real(**changes))[column] == cell


def test_the_status_text_begins_with_the_version_and_the_node() -> None:
    lines = status_text(document(web())).splitlines()
    assert lines[:2] == ["ipvsd 9.9.9 on director1", ""]


def test_the_vrrp_table_names_each_instances_master() -> None:
    followed = dataclasses.replace(
        VI_1, name="VI_2", state="BACKUP", master_address=IPv4Address("192.168.1.20")
    )
    ours = dataclasses.replace(VI_1, master_address=IPv4Address("192.168.1.10"))
    unheard = dataclasses.replace(VI_1, name="VI_3", state="BACKUP")
    text = status_text(StatusDocument("director2", "9.9.9", vrrp=(ours, followed, unheard)))
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line}
    header = rows["Instance"]
    master = header.index("Master")
    assert header[master - 1 : master + 2] == ["EffPriority", "Master", "VIPs"]
    assert rows["VI_1"][master] == "192.168.1.10"
    assert rows["VI_2"][master] == "192.168.1.20"
    assert rows["VI_3"][master] == "-"  # no advert heard yet


def lines_after(text: str, endpoint: str) -> list[str]:
    """The lines that follow the row of the real at `endpoint`."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"  -> {endpoint} "))
    return lines[index + 1 :]


def test_a_down_real_says_why_and_since_when() -> None:
    down = real(weight=0, health="down", health_reason="connection refused", health_since=SINCE)
    up = real(address=ip_address("192.168.1.31"), health_since=SINCE, health_reason="connected")
    now = SINCE + timedelta(minutes=4, seconds=10)
    text = status_text(document(web(reals=(down, up))), now=now)
    assert lines_after(text, "192.168.1.30:80")[0] == (
        "       down since 2026-03-01 12:03:04 UTC (4m10s ago): connection refused"
    )
    assert lines_after(text, "192.168.1.31:80") == []  # up: nothing to explain
    # Shown in the zone of `now` (the CLI passes the local time).
    cet = timezone(timedelta(hours=1), "CET")
    text = status_text(document(web(reals=(down,))), now=now.astimezone(cet))
    assert lines_after(text, "192.168.1.30:80")[0] == (
        "       down since 2026-03-01 13:03:04 CET (4m10s ago): connection refused"
    )


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        (
            {"health": "unknown", "health_since": SINCE},
            "       unknown since 2026-03-01 12:03:04 UTC (10s ago): no check has finished yet",
        ),
        (
            {"health": "unknown", "health_since": SINCE, "health_reason": "timeout after 1.0 s"},
            "       unknown since 2026-03-01 12:03:04 UTC (10s ago): timeout after 1.0 s",
        ),
        # A document from a daemon that did not send the time yet.
        ({"health": "down", "health_reason": "exit status 1"}, "       down: exit status 1"),
    ],
)
def test_a_real_that_is_not_up_gets_a_line_of_explanation(
    changes: dict[str, Any], line: str
) -> None:
    text = status_text(document(web(reals=(real(**changes),))), now=SINCE + timedelta(seconds=10))
    assert lines_after(text, "192.168.1.30:80") == [line]


def test_without_now_the_time_of_the_change_is_shown_without_its_age() -> None:
    down = real(health="down", health_reason="connection refused", health_since=SINCE)
    assert lines_after(status_text(document(web(reals=(down,)))), "192.168.1.30:80") == [
        "       down since 2026-03-01 12:03:04 UTC: connection refused"
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3.0, "0s"),  # the clocks of the CLI and the daemon disagree a little
        (0.4, "0s"),
        (59.9, "59s"),
        (60, "1m00s"),
        (250, "4m10s"),
        (3600, "1h00m"),
        (3 * 3600 + 5 * 60 + 9, "3h05m"),
        (2 * 86400 + 4 * 3600 + 59, "2d04h"),
    ],
)
def test_ages_are_short(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


@pytest.mark.parametrize(
    ("service", "line"),
    [
        (web(), "TCP  192.168.1.200:80 rr"),
        (
            web(flags=ServiceFlag.PERSISTENT, persistence_timeout=300),
            "TCP  192.168.1.200:80 rr persistent 300",
        ),
        (
            web(flags=ServiceFlag.PERSISTENT, persistence_timeout=300, persistence_netmask=24),
            "TCP  192.168.1.200:80 rr persistent 300 mask /24",
        ),
        (FWMARK6, "FWM  5 IPv6 wrr"),
        (web(address=None, port=None, fwmark=10, scheduler="sh"), "FWM  10 sh"),
        (
            web(address=ip_address("2001:db8::200"), port=53, protocol=Protocol.UDP),
            "UDP  [2001:db8::200]:53 rr",
        ),
        (
            web(
                address=ip_address("2001:db8::200"),
                family=Family.INET6,
                flags=ServiceFlag.PERSISTENT | ServiceFlag.ONEPACKET | ServiceFlag.SCHED1,
                persistence_timeout=60,
                persistence_netmask=128,  # per client: no mask shown
                persistence_engine="sip",
            ),
            "TCP  [2001:db8::200]:80 rr (flag-1,ops) persistent 60 pe sip",
        ),
        (web(protocol=Protocol.SCTP), "SCTP 192.168.1.200:80 rr"),
        # ipvsadm names the scheduler flags of sh and mh by what they do.
        (
            web(scheduler="mh", flags=ServiceFlag.SCHED1 | ServiceFlag.SCHED2),
            "TCP  192.168.1.200:80 mh (mh-fallback,mh-port)",
        ),
        (web(scheduler="sh", flags=ServiceFlag.SCHED2), "TCP  192.168.1.200:80 sh (sh-port)"),
        (web(scheduler="wrr", flags=ServiceFlag.SCHED3), "TCP  192.168.1.200:80 wrr (flag-3)"),
    ],
)
def test_one_service_line_for_status_and_list(service: ServiceStatus, line: str) -> None:
    assert service_line(service) == line
    assert line in status_text(document(service)).splitlines()
    assert line in ipvsadm_table([service]).splitlines()


def test_the_sorry_server_row() -> None:
    sorry = real(address=ip_address("192.168.1.99"), configured_weight=None, sorry=True)
    text = status_text(document(web(reals=(real(weight=0, health="down"), sorry))))
    rows = [line.split() for line in text.splitlines() if line.startswith("  -> 192")]
    assert rows == [
        ["->", "192.168.1.30:80", "Masq", "0", "1", "down", "0", "25", "0"],
        ["->", "192.168.1.99:80", "Masq", "1", "-", "up", "0", "25", "0"],
    ]


def test_status_of_a_persistent_service_shows_its_persistence() -> None:
    # The bug of issue 10: the human table read fields the document did not have.
    config = parse_config(CONFIG, default_node_name="n1")
    doc = run_steps(
        status_document_steps(
            node="n1",
            version="0",
            config=config,
            kernel=desired_table(config),
            health={},
            drained=set(),
            vrrp=[],
        )
    )
    lines = status_text(from_json(json.loads(json.dumps(to_json(doc))))).splitlines()
    assert "TCP  192.168.1.200:80 rr persistent 300" in lines
    assert "FWM  5 IPv6 wrr" in lines


# --- ipvsd list: exactly ipvsadm -Ln's layout -------------------------------------------------


def kernel_table() -> Table:
    counters = DestCounters(3, 25, 1, Stats(10, 200, 150, 30000, 90000, 1, 2, 3, 4, 5))
    tcp = make_service(
        ServiceKey(Family.INET, Protocol.TCP, ip_address("192.168.1.200"), 80),
        ServiceAttrs("rr", ServiceFlag.PERSISTENT, 300, 32),
        [
            Dest(DestKey(ip_address("192.168.1.31"), 8080), DestAttrs(ForwardMethod.DR, 100), None),
            Dest(DestKey(ip_address("192.168.1.30"), 80), DestAttrs(), counters),
        ],
    )
    tcp = Service(tcp.key, tcp.attrs, tcp.dests, Stats(12, 300, 200, 40000, 100000))
    udp6 = make_service(
        ServiceKey(Family.INET6, Protocol.UDP, ip_address("2001:db8::200"), 53),
        ServiceAttrs("wrr", ServiceFlag(0x0D), 60, 64, "sip"),
        [
            Dest(
                DestKey(ip_address("2001:db8::30"), 53),
                DestAttrs(ForwardMethod.TUNNEL, 2),
                counters,
            )
        ],
    )
    fwmark6 = make_service(
        fwmark_key(Family.INET6, 5),
        ServiceAttrs("wrr"),
        [Dest(DestKey(ip_address("2001:db8::31"), 0), DestAttrs(ForwardMethod.DR))],
    )
    fwmark4 = make_service(fwmark_key(Family.INET, 10), ServiceAttrs("sh"))
    sctp = make_service(
        ServiceKey(Family.INET, Protocol.SCTP, ip_address("10.0.0.1"), 3868), ServiceAttrs("lc")
    )
    return Table.of([sctp, fwmark6, udp6, tcp, fwmark4])


def test_list_table() -> None:
    # A fwmark next to a TCP service of its family: sorting the keys themselves raised.
    assert ipvsadm_table(services_from_table(kernel_table())).splitlines() == [
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        "FWM  10 sh",
        "TCP  192.168.1.200:80 rr persistent 300",
        "  -> 192.168.1.30:80              Masq    1      3          25",
        "  -> 192.168.1.31:8080            Route   100    0          0",
        "SCTP 10.0.0.1:3868 lc",
        "FWM  5 IPv6 wrr",
        "  -> [2001:db8::31]:0             Route   1      0          0",
        "UDP  [2001:db8::200]:53 wrr (flag-1,ops) persistent 60 mask /64 pe sip",
        "  -> [2001:db8::30]:53            Tunnel  2      3          25",
    ]


def test_list_table_with_stats() -> None:
    assert ipvsadm_table(services_from_table(kernel_table()), stats=True).splitlines() == [
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
        "FWM  10 sh",
        "TCP  192.168.1.200:80 rr persistent 300       12      300      200    40000   100000",
        "  -> 192.168.1.30:80                      10      200      150    30000    90000",
        f"  -> {'192.168.1.31:8080':<30} ",  # the kernel gave no counters
        "SCTP 10.0.0.1:3868 lc",
        "FWM  5 IPv6 wrr",
        f"  -> {'[2001:db8::31]:0':<30} ",
        "UDP  [2001:db8::200]:53 wrr (flag-1,ops) persistent 60 mask /64 pe sip",
        "  -> [2001:db8::30]:53                    10      200      150    30000    90000",
    ]


def test_services_from_a_kernel_table_have_no_health() -> None:
    services = services_from_table(kernel_table())
    tcp = services[1]
    assert (tcp.address, tcp.port, tcp.fwmark, tcp.persistence_timeout) == (
        ip_address("192.168.1.200"),
        80,
        None,
        300,
    )
    assert tcp.stats == StatsView(12, 300, 200, 40000, 100000)
    first, second = tcp.reals
    assert (first.health, first.configured_weight, first.in_kernel) == (None, None, True)
    assert (first.active_conns, first.inactive_conns, first.persistent_conns) == (3, 25, 1)
    assert first.stats == StatsView(10, 200, 150, 30000, 90000, 1, 2, 3, 4, 5)
    assert (second.upper_threshold, second.stats) == (0, None)
    assert (services[0].port, services[0].fwmark, services[0].address) == (None, 10, None)


def test_list_orders_reals_of_both_families() -> None:
    # An IPv4 service may tunnel to IPv6 reals; IPv4Address and IPv6Address do not compare.
    service = make_service(
        WEB_KEY,
        ServiceAttrs("rr"),
        [
            Dest(DestKey(ip_address("2001:db8::30"), 80), DestAttrs(ForwardMethod.TUNNEL)),
            Dest(DestKey(ip_address("192.168.1.31"), 80), DestAttrs(ForwardMethod.TUNNEL)),
            Dest(DestKey(ip_address("192.168.1.30"), 80), DestAttrs(ForwardMethod.TUNNEL)),
        ],
    )
    (listed,) = services_from_table(Table.of([service]))
    assert [str(r.address) for r in listed.reals] == [
        "192.168.1.30",
        "192.168.1.31",
        "2001:db8::30",
    ]


# --- the builder (ipvsd.daemon.status) ----------------------------------------------------------

CONFIG = """
ipvs:
  services:
    - address: 192.168.1.200
      port: 80
      scheduler: rr
      persistence_timeout: 300
      check: {type: tcp}
      sorry_server: {address: 192.168.1.99}
      reals:
        - {address: 192.168.1.30, weight: 1}
        - {address: 192.168.1.31, weight: 2}
        - {address: 192.168.1.32, weight: 3, forward: dr}
        - {address: 192.168.1.33, weight: 4, check: {type: none}}
    - fwmark: 5
      family: ipv6
      scheduler: wrr
      reals:
        - {address: "2001:db8::30", port: 80}
"""


def dest(address: str, weight: int, counters: DestCounters | None = None) -> Dest:
    return Dest(DestKey(ip_address(address), 80), DestAttrs(weight=weight), counters)


def build(config: Config, kernel: Table | None, **kwargs: Any) -> StatusDocument:
    arguments: dict[str, Any] = {"health": {}, "drained": set(), "vrrp": []} | kwargs
    steps = status_document_steps(node="n1", version="0", config=config, kernel=kernel, **arguments)
    return run_steps(steps)


def test_the_builder_puts_config_kernel_and_health_side_by_side() -> None:
    config = parse_config(CONFIG, default_node_name="n1")
    attrs = ServiceAttrs("rr", ServiceFlag.PERSISTENT, 300, 32)
    web_service = make_service(
        WEB_KEY,
        attrs,
        [
            dest("192.168.1.30", 1, DestCounters(2, 25, 1)),
            dest("192.168.1.31", 0),
            dest("192.168.1.33", 4),
            dest("192.168.1.99", 1),  # the sorry server
        ],
    )
    kernel = Table.of([Service(WEB_KEY, attrs, web_service.dests, Stats(conns=9))])
    real_31 = (WEB_KEY, DestKey(ip_address("192.168.1.31"), 80))
    doc = build(
        config,
        kernel,
        health={
            (WEB_KEY, DestKey(ip_address("192.168.1.30"), 80)): HealthRecord(Health.UP, 0.0),
            real_31: HealthRecord(Health.UP, 0.0),
        },
        drained={real_31},
        vrrp=[VrrpView(**{f.name: getattr(VI_1, f.name) for f in dataclasses.fields(VI_1)})],
    )
    assert (doc.node, doc.version, doc.vrrp, doc.sync_daemon) == ("n1", "0", (VI_1,), None)
    service, fwmark = doc.services
    assert service == web(
        flags=ServiceFlag.PERSISTENT,
        persistence_timeout=300,
        stats=StatsView(conns=9),
        reals=service.reals,
    )
    rows = [
        (str(r.address), r.forward, r.weight, r.configured_weight, r.health, r.drained, r.in_kernel)
        for r in service.reals
    ]
    assert rows == [
        ("192.168.1.30", ForwardMethod.NAT, 1, 1, "up", False, True),
        ("192.168.1.31", ForwardMethod.NAT, 0, 2, "up", True, True),
        ("192.168.1.32", ForwardMethod.DR, 0, 3, "unknown", False, False),  # not yet checked
        ("192.168.1.33", ForwardMethod.NAT, 4, 4, "up", False, True),  # no check: up
        ("192.168.1.99", ForwardMethod.NAT, 1, None, "up", False, True),
    ]
    assert [r.sorry for r in service.reals] == [False] * 4 + [True]
    first = service.reals[0]
    assert (first.active_conns, first.inactive_conns, first.persistent_conns) == (2, 25, 1)
    assert (fwmark.address, fwmark.port, fwmark.fwmark, fwmark.family) == (
        None,
        None,
        5,
        Family.INET6,
    )
    assert not fwmark.in_kernel
    assert [(r.weight, r.in_kernel, r.active_conns) for r in fwmark.reals] == [(0, False, 0)]


def test_the_builder_carries_the_last_checks_reason_and_the_time_of_the_change() -> None:
    config = parse_config(CONFIG, default_node_name="n1")
    checked = {
        "192.168.1.30": HealthRecord(Health.DOWN, SINCE.timestamp() + 0.75, "connection refused"),
        "192.168.1.31": HealthRecord(Health.UNKNOWN, SINCE.timestamp()),  # no check ended yet
    }
    health = {(WEB_KEY, DestKey(ip_address(a), 80)): record for a, record in checked.items()}
    kernel = Table.of([make_service(WEB_KEY, ServiceAttrs("rr"), [dest("192.168.1.99", 1)])])
    doc = build(config, kernel, health=health)
    reals = {
        str(r.address): (r.health, r.health_reason, r.health_since) for r in doc.services[0].reals
    }
    assert reals == {
        # The time is UTC, to the second.
        "192.168.1.30": ("down", "connection refused", SINCE),
        "192.168.1.31": ("unknown", None, SINCE),
        "192.168.1.32": ("unknown", None, None),  # not watched yet
        "192.168.1.33": ("up", None, None),  # no check: nothing to explain
        "192.168.1.99": ("up", None, None),  # the sorry server is not checked
    }
    assert doc.services[0].reals[0].health_since.tzinfo is UTC  # type: ignore[union-attr]


def test_the_builder_without_ipvs_lists_no_services() -> None:
    config = parse_config(CONFIG, default_node_name="n1")
    assert build(config, None).services == ()


def test_the_builder_shows_the_sync_daemon() -> None:
    config = parse_config("{}", default_node_name="n1")
    running = SyncDaemon(SyncState.MASTER, "eth1", 51, 1472, ip_address("224.0.0.81"), 8848, 1)
    status = SyncDaemonStatus(
        target=SyncTarget(vrrp_instance="VI_1", interface="eth1", sync_id=51),
        wanted=SyncState.MASTER,
        running=(running,),
        error=None,
    )
    assert to_json(build(config, None, sync_daemon=status))["sync_daemon"] == {
        "vrrp_instance": "VI_1",
        "interface": "eth1",
        "sync_id": 51,
        "wanted": "master",
        "running": [
            {
                "state": "master",
                "interface": "eth1",
                "sync_id": 51,
                "mcast_group": "224.0.0.81",
                "mcast_port": 8848,
                "mcast_ttl": 1,
                "sync_maxlen": 1472,
            }
        ],
        "error": None,
    }
    unread = SyncDaemonStatus(target=None, wanted=None, running=None, error="EPERM")
    assert build(config, None, sync_daemon=unread).sync_daemon == SyncDaemonStatusView(
        None, None, None, None, None, "EPERM"
    )


def test_a_fault_shows_its_reason_in_json_and_in_the_table() -> None:
    reason = "no IPv4 address on eth1"
    faulted = dataclasses.replace(VI_1, state="FAULT", fault_reason=reason, failures=2)
    doc = StatusDocument(node="d", version="v", vrrp=(faulted,))
    data = to_json(doc)
    assert data["vrrp"][0]["fault_reason"] == "no IPv4 address on eth1"
    assert data["vrrp"][0]["failures"] == 2
    assert from_json(data) == doc
    line = next(line for line in status_text(doc).splitlines() if line.startswith("VI_1 "))
    assert "FAULT (no IPv4 address on eth1)" in line


def test_the_builder_yields_once_per_service_so_the_loop_can_build_it_in_slices() -> None:
    """10,000 services are a second of CPU: the daemon drains these steps in loop slices."""
    config = parse_config(CONFIG, default_node_name="n1")
    kernel = Table()
    steps = status_document_steps(
        node="n1", version="0", config=config, kernel=kernel, health={}, drained=set(), vrrp=[]
    )
    yields = 0
    result: StatusDocument | None = None
    while result is None:
        try:
            next(steps)
            yields += 1
        except StopIteration as done:
            result = done.value
    assert result == build(config, kernel)
    assert yields == len(config.ipvs.services) > 1


def test_vrrpv3_instances_show_version_family_and_centisecond_intervals() -> None:
    v3 = dataclasses.replace(
        VI_1, version=3, advert_int=0.1, master_adver_int=0.25, name="VI_3", vrid=53
    )
    data = to_json(StatusDocument("d", "v", vrrp=(VI_1, v3)))
    assert [(v["version"], v["family"], v["advert_int"]) for v in data["vrrp"]] == [
        (2, "ipv4", 1.0),
        (3, "ipv4", 0.1),
    ]
    assert data["vrrp"][1]["master_adver_int"] == 0.25
    text = status_text(StatusDocument("d", "v", vrrp=(VI_1, v3)))
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line}
    header = rows["Instance"]
    column = header.index("VRRP")
    assert header[column : column + 2] == ["VRRP", "AdvertInt"]
    assert rows["VI_1"][column : column + 2] == ["v2/ipv4", "1s"]
    assert rows["VI_3"][column : column + 2] == ["v3/ipv4", "0.10s(0.25s)"]
