"""The daemon writes the status text without the typed tree (`status_text_steps`):
byte for byte what the typed builder and `to_json` made before (a golden file written
by the tree before that change, 3a5c71e), and what `document_text` makes of the
decoded document.

`scenario` uses only what both trees have, so the golden file can be made again
from the old tree: ``PYTHONPATH=OLD python tests/unit/test_status_text.py > FILE``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Interface, ip_address
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "status" / "rich-status.json"
SINCE = datetime(2026, 3, 1, 12, 3, 4, tzinfo=UTC).timestamp()

CONFIG = """
node_name: n1
ipvs:
  services:
    - address: 192.168.1.200
      port: 80
      scheduler: rr
      persistence_timeout: 300
      persistence_netmask: 24
      check: {type: tcp}
      quorum: 2
      hysteresis: 1
      sorry_server: {address: 192.168.1.99}
      reals:
        - {address: 192.168.1.30, weight: 1}
        - {address: 192.168.1.31, weight: 2}
        - {address: 192.168.1.32, weight: 3, forward: dr}
        - {address: 192.168.1.33, weight: 4, check: {type: none}}
        - {address: 192.168.1.34, port: 8080, weight: 5, checks: [{type: ping}]}
    - fwmark: 5
      family: ipv6
      scheduler: wrr
      reals:
        - {address: "2001:db8::30", port: 80}
    - address: 192.168.1.201
      port: 53
      protocol: udp
      scheduler: mh
      scheduler_flags: [mh-fallback, mh-port]
      forward: tunnel
      reals:
        - {address: 10.1.0.1, weight: 3}
        - {address: 10.1.0.2, weight: 7}
    - address: 192.168.1.202
      port: 443
      reals:
        - {address: 10.2.0.1}
"""


def scenario() -> dict[str, Any]:
    """The builder's arguments: config, kernel, health, drains, VRRP, quorum."""
    from ipvsd import model as m
    from ipvsd.config import parse_config
    from ipvsd.control.status import VrrpStatus
    from ipvsd.health.quorum import QuorumState
    from ipvsd.health.tracker import CheckPart, Health, HealthRecord

    config = parse_config(CONFIG)
    web = m.ServiceKey(m.Family.INET, m.Protocol.TCP, ip_address("192.168.1.200"), 80)
    dns = m.ServiceKey(m.Family.INET, m.Protocol.UDP, ip_address("192.168.1.201"), 53)

    def dest(address: str, port: int, weight: int, k: int, **attrs: Any) -> m.Dest:
        stats = m.Stats(k, k * 10, k * 20, k * 3000, 2**53 + k, 1, 2, 3, 4, 5)
        counters = m.DestCounters(k, k * 2, k % 3, stats)
        return m.Dest(
            m.DestKey(ip_address(address), port), m.DestAttrs(weight=weight, **attrs), counters
        )

    web_attrs = m.ServiceAttrs("rr", m.ServiceFlag.PERSISTENT, 300, 24)
    web_service = m.make_service(
        web,
        web_attrs,
        [
            dest("192.168.1.30", 80, 1, 1, upper_threshold=100, lower_threshold=50),
            dest("192.168.1.31", 80, 0, 2),
            dest("192.168.1.33", 80, 4, 3),
            dest("192.168.1.34", 8080, 5, 4),
            dest("192.168.1.99", 80, 1, 5),  # the sorry server
        ],
    )
    dns_service = m.make_service(
        dns,
        m.ServiceAttrs("mh", m.ServiceFlag.SCHED1 | m.ServiceFlag.SCHED2),
        [
            dest("10.1.0.2", 53, 0, 6, forward=m.ForwardMethod.TUNNEL),
            dest("10.1.0.1", 53, 3, 7, forward=m.ForwardMethod.TUNNEL),
        ],
    )
    kernel = m.Table.of([web_service, dns_service])
    checks = (CheckPart("tcp", True, "connected"), CheckPart("ping", False, "timeout"))
    health = {
        (web, m.DestKey(ip_address("192.168.1.30"), 80)): HealthRecord(
            Health.DOWN, SINCE + 0.75, 'refused: "quoted" \\ caf\u00e9 \u2603'
        ),
        (web, m.DestKey(ip_address("192.168.1.31"), 80)): HealthRecord(Health.UP, SINCE + 3600),
        (web, m.DestKey(ip_address("192.168.1.34"), 8080)): HealthRecord(
            Health.DOWN, SINCE, "ping: timeout", checks
        ),
        # 192.168.1.32 is not watched yet: unknown
    }
    drained = {(web, m.DestKey(ip_address("192.168.1.31"), 80))}
    quorum = {web: QuorumState(False, 4), dns: QuorumState(True, 10)}
    vip = (IPv4Interface("192.168.1.200/24"),)
    vrrp = [
        VrrpStatus("VI_1", "MASTER", "eth1", 51, 100, 98, vip, None, 0, IPv4Address("192.168.1.10"))
    ]
    return {
        "node": "n1",
        "version": "9.9.9",
        "config": config,
        "kernel": kernel,
        "health": health,
        "drained": drained,
        "vrrp": vrrp,
        "quorum": quorum.get,
    }


def old_text() -> str:
    """What the tree before the change answered: the typed builder, then `to_json`."""
    from ipvsd.control.status_json import to_json
    from ipvsd.daemon.status import status_document_steps
    from ipvsd.steps import run_steps

    document = run_steps(status_document_steps(**scenario()))
    return json.dumps({"ok": True, "result": to_json(document)}, separators=(",", ":"))


def test_the_text_is_byte_for_byte_the_golden_answer() -> None:
    from ipvsd.daemon.status import status_text_steps
    from ipvsd.steps import run_steps

    text = "".join(run_steps(status_text_steps(**scenario())))
    assert '{"ok":true,"result":' + text + "}" == GOLDEN.read_text().rstrip("\n")


def test_the_typed_path_writes_the_same_text() -> None:
    """The typed document (what ``ipvsd status`` decodes) and the codec's encoder agree."""
    from ipvsd.control.status_json import document_text, to_json
    from ipvsd.daemon.status import status_document_steps, status_text_steps
    from ipvsd.steps import run_steps

    text = "".join(run_steps(status_text_steps(**scenario())))
    document = run_steps(status_document_steps(**scenario()))
    assert "".join(document_text(document)) == text
    assert json.dumps(to_json(document), separators=(",", ":")) == text


def test_a_plan_is_kept_for_its_config_and_remade_for_another() -> None:
    from ipvsd.config import parse_config
    from ipvsd.daemon.status import StatusPlan, status_text_steps
    from ipvsd.steps import run_steps

    arguments = scenario()
    plan = StatusPlan(arguments["config"])
    first = "".join(run_steps(status_text_steps(**arguments, plan=plan)))
    again = "".join(run_steps(status_text_steps(**arguments, plan=plan)))
    assert first == again == "".join(run_steps(status_text_steps(**scenario())))
    # A plan of another config (a reload) is not used for this one.
    other = parse_config(CONFIG.replace("weight: 7", "weight: 9"))
    changed = "".join(run_steps(status_text_steps(**arguments | {"config": other}, plan=plan)))
    assert '"configured_weight":9' in changed
    assert '"configured_weight":9' not in first


if __name__ == "__main__":
    sys.stdout.write(old_text() + "\n")


class _CountingKernel:
    """The view's kernel: counts its dumps, answers an empty table."""

    def __init__(self) -> None:
        self.dumps = 0

    async def dump(self, *, with_stats: bool = True) -> Any:
        from ipvsd.model import Table

        self.dumps += 1
        return Table()


async def test_the_view_keeps_its_plan_reads_no_kernel_without_services(tmp_path: Path) -> None:
    """``status --check`` (no services) costs no dump; a reload's config gets a new plan."""
    from ipvsd.config import parse_config
    from ipvsd.daemon.admin_state import DrainStore
    from ipvsd.daemon.view import DaemonView
    from tests.unit.test_daemon import config_text
    from tests.unit.test_daemon_reload import components

    async def no_reload(*, force: bool = False) -> list[str]:
        raise AssertionError("no reload here")

    parts = components(config_text(tmp_path / "ipvsd.sock"))
    kernel = _CountingKernel()
    parts.ipvs = kernel  # type: ignore[assignment]
    view = DaemonView(
        parts, reload=no_reload, drains_changed=lambda: None, drains=DrainStore(tmp_path)
    )
    bare = json.loads("".join(await view.status_text(services=False)))
    assert (bare["services"], kernel.dumps) == ([], 0)
    full = json.loads("".join(await view.status_text()))
    assert kernel.dumps == 1
    assert [s["in_kernel"] for s in full["services"]] == [False] * len(full["services"]) != []
    assert (await view.status()).services[0].reals[0].configured_weight == 1
    parts.config = parse_config(config_text(tmp_path / "ipvsd.sock", weight_40=7))
    reloaded = json.loads("".join(await view.status_text()))
    assert [r["configured_weight"] for r in reloaded["services"][0]["reals"]] == [1, 7]
