"""``ipvsd import keepalived``: conversion, reports, exit codes, and the real config loader.

The configs under tests/data/keepalived/ are written for these tests in the
styles operators use (keepalived's own samples are not copied here; they are
surveyed when a local keepalived checkout exists, see `test_keepalived_samples`).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ipvsd.cli import main
from ipvsd.config import load_config, parse_config
from ipvsd.importers.emit import to_yaml
from ipvsd.importers.keepalived import convert
from ipvsd.importers.keepalived_parse import parse
from ipvsd.importers.report import Conversion, Outcome
from ipvsd.importers.sources import read_keepalived

DATA = Path(__file__).resolve().parents[1] / "data" / "keepalived"
CONFIGS = [*sorted(DATA.glob("*.conf")), DATA / "includes" / "keepalived.conf"]
REPORT_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<directive>[^:]+): (?P<message>.+)$")
UNHANDLED = "not converted (the importer does not handle it here)"
UNKNOWN = "not a keepalived 2.2 keyword"


def converted(path: Path) -> Conversion:
    loaded = read_keepalived(str(path))
    return convert(loaded.nodes, unmatched_includes=loaded.unmatched)


def convert_text(text: str, name: str = "k.conf") -> Conversion:
    return convert(parse(text, name))


def reports(conversion: Conversion) -> list[str]:
    return [str(report) for report in conversion.reports]


def service(conversion: Conversion, index: int = 0) -> dict[str, Any]:
    services: list[dict[str, Any]] = conversion.data["ipvs"]["services"]
    return services[index]


# --- every output is a config ipvsd accepts --------------------------------------------


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: str(path.relative_to(DATA)))
def test_every_import_loads_with_the_real_config_loader(path: Path, tmp_path: Path) -> None:
    conversion = converted(path)
    out = tmp_path / "ipvsd.yaml"
    out.write_text(to_yaml(conversion.data, header=["test"], comments=conversion.comments))
    load_config(out)  # raises ConfigError with every problem
    assert yaml.safe_load(out.read_text()) == conversion.data
    assert all(outcome is not None for _, outcome in conversion.outcomes)
    assert UNHANDLED not in "\n".join(reports(conversion))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: str(path.relative_to(DATA)))
def test_the_cli_output_passes_check_config(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ipvsd.yaml"
    assert main(["import", "keepalived", str(path), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    for line in captured.err.splitlines():
        assert REPORT_LINE.match(line), line
    assert main(["check-config", "--config", str(out)]) == 0
    text = out.read_text()
    assert text.startswith(
        f"# ipvsd configuration converted by `ipvsd import keepalived` from {path}"
    )


# --- the operator configs ----------------------------------------------------------------


def test_two_armed_nat_with_sync_group_and_sync_daemon() -> None:
    conversion = converted(DATA / "nat_two_arm.conf")
    data = conversion.data
    assert data["node_name"] == "lb1"
    ext, internal = data["vrrp"]["instances"]
    assert ext == {
        "name": "VI_EXT",
        "interface": "eth0",
        "vrid": 60,
        "priority": 150,
        "advert_int": 1,
        "auth_pass": "s3cr3t",
        "virtual_ipaddresses": ["203.0.113.10/24"],
        "notify": "/usr/local/sbin/vrrp-notify.sh",
        "garp_delay": 1,
    }
    assert internal["track_interfaces"] == [{"interface": "eth0", "weight": -60}]
    assert data["vrrp"]["sync_groups"] == [
        {
            "name": "VG_LB",
            "instances": ["VI_EXT", "VI_INT"],
            "notify_master": ["/usr/local/sbin/lb-notify", "master"],
        }
    ]
    ipvs = data["ipvs"]
    assert ipvs["timeouts"] == {"tcp": 900, "tcpfin": 30, "udp": 300}
    assert ipvs["sync_daemon"] == {"vrrp_instance": "VI_INT", "interface": "eth1", "sync_id": 61}
    assert ipvs["cleanup_on_exit"] is True
    web, dns = ipvs["services"]
    assert web["check"] == {
        "type": "tcp",
        "interval": 5,
        "timeout": 2,
        "rise": 1,
        "fall": 3,
        "retry_interval": 1,
    }
    assert web["on_failure"] == "drain"
    assert web["reals"] == [
        {"address": "10.1.0.11", "port": 8080, "weight": 100},
        {"address": "10.1.0.12", "port": 8080, "weight": 100},
    ]
    assert dns["protocol"] == "udp"
    assert dns["scheduler_flags"] == ["one-packet"]
    assert "check" not in dns
    assert dns["on_failure"] == "remove"
    name = str(DATA / "nat_two_arm.conf")
    assert not [line for line in reports(conversion) if ":24: " in line]  # notify_master
    # keepalived clears state MASTER in a sync group with a non-owner member: both
    # instances stay BACKUP (no initial_state above), and the import says why.
    assert f"{name}:28: state: keepalived starts the members of sync group 'VG_LB'" in (
        "\n".join(reports(conversion))
    )


def test_k8s_api_vip_converts_the_track_script() -> None:
    conversion = converted(DATA / "k8s_api.conf")
    [instance] = conversion.data["vrrp"]["instances"]
    assert instance["preempt"] is False
    assert instance["unicast_src"] == "10.0.0.11"
    assert instance["unicast_peers"] == ["10.0.0.12", "10.0.0.13"]
    assert instance["auth_pass"] == "k8s-vip-"
    assert instance["track_scripts"] == [{"script": "check_apiserver"}]  # its weight: -2
    assert conversion.data["vrrp"]["scripts"] == [
        {
            "name": "check_apiserver",
            "command": ["/etc/keepalived/check_apiserver.sh"],
            "interval": 3,
            "timeout": 5,
            "rise": 2,
            "fall": 10,
            "weight": -2,
        }
    ]
    assert conversion.data["ipvs"] == {"services": []}
    name = str(DATA / "k8s_api.conf")
    lines = reports(conversion)
    assert not [line for line in lines if "script:" in line or "track_script" in line]
    assert (
        f"{name}:37: auth_pass: longer than 8 bytes: cut to 'k8s-vip-', as keepalived sends it"
        in lines
    )
    outcomes = dict(conversion.outcomes)
    assert outcomes["script"] is Outcome.CONVERTED


def test_dr_with_persistence_fwmark_and_sorry_server() -> None:
    conversion = converted(DATA / "dr_persistence.conf")
    web = service(conversion, 0)
    assert {key: web[key] for key in ("forward", "persistence_timeout", "persistence_netmask")} == {
        "forward": "dr",
        "persistence_timeout": 300,
        "persistence_netmask": 24,
    }
    assert web["check"]["expected_status"] == [200, 204]
    assert web["check"]["host"] == "www.example.com"
    assert web["sorry_server"] == {"address": "192.0.2.250", "port": 80}
    mark = service(conversion, 1)
    assert mark["fwmark"] == 21
    assert "protocol" not in mark
    assert mark["scheduler_flags"] == ["sh-port"]
    assert mark["check"]["port"] == 21
    assert mark["reals"][0] == {"address": "192.0.2.11", "port": 0, "weight": 1}
    lines = reports(conversion)
    # alpha on the first service: ipvsd's default; none on the second: alpha: false.
    assert "alpha" not in web
    assert mark["alpha"] is False
    assert not [line for line in lines if "alpha" in line]


def test_virtual_server_group_becomes_a_service_group() -> None:
    conversion = converted(DATA / "vsg.conf")
    ipvs = conversion.data["ipvs"]
    assert ipvs["service_groups"] == [
        {
            "name": "WEB_VIPS",
            "members": ["198.51.100.10-12:80", "198.51.100.20:8080", "fwmark:7"],
        }
    ]
    [web] = ipvs["services"]
    assert (web["group"], web["protocol"], len(web["reals"])) == ("WEB_VIPS", "tcp", 2)
    assert "address" not in web
    assert not [line for line in reports(conversion) if "WEB_VIPS" in line]
    config = parse_config(to_yaml(conversion.data), "out.yaml", default_node_name="n1")
    assert len(config.ipvs.services) == 5  # one kernel service per member, checks shared


def test_misc_check_with_arguments_gets_a_check_per_real() -> None:
    conversion = converted(DATA / "misc_check.conf")
    pool = service(conversion)
    assert "check" not in pool  # the commands differ: no common check
    assert pool["on_failure"] == "drain"
    first, second = (real["check"] for real in pool["reals"])
    assert first == {
        "type": "exec",
        "interval": 15,
        "timeout": 5,
        "rise": 1,
        "fall": 1,  # MISC_CHECK's default retry is 0
        "command": ["/usr/local/bin/pg_isready", "-h", "10.3.0.11", "-q"],
    }
    assert second["command"][2] == "10.3.0.12"
    assert second["dynamic_weight"] is True, "misc_dynamic"
    assert "dynamic_weight" not in first
    assert not [line for line in reports(conversion) if "misc_dynamic" in line]


def test_ssl_get_converts_every_url_with_its_status_ranges_and_digest() -> None:
    conversion = converted(DATA / "ssl_get.conf")
    check = service(conversion)["check"]
    assert check["type"] == "https"
    assert check["port"] == 9443
    assert check["urls"] == [
        {"path": "/api/health?deep=1", "expected_status": ["200-299", 401]},
        {
            "path": "/api/version",
            "expected_status": "200-299",  # keepalived's default, not ipvsd's 200
            "digest": "9b3a0c85a887a256d6939da88aabd8cd",
        },
    ]
    assert (check["timeout"], check["fall"], check["retry_interval"]) == (4, 3, 2)
    assert not [line for line in reports(conversion) if ": url: " in line or "digest" in line]
    assert not [line for line in reports(conversion) if "delay_before_retry" in line]


def test_includes_convert_and_an_unmatched_include_is_reported() -> None:
    conversion = converted(DATA / "includes" / "keepalived.conf")
    assert [i["name"] for i in conversion.data["vrrp"]["instances"]] == ["VI_1", "VI_2"]
    assert [r["weight"] for r in service(conversion)["reals"]] == [1, 2]
    base = DATA / "includes"
    assert reports(conversion) == [
        f"{base / 'keepalived.conf'}:8: include: no file matches {base}/missing/*.conf: "
        "nothing included"
    ]
    assert dict(conversion.outcomes)["include"] is Outcome.REPORTED


# --- defaults that differ are explicit -----------------------------------------------------

MINIMAL_SERVER = """\
virtual_server 192.0.2.1 80 {{
    {service}
    real_server 10.0.0.1 80 {{
        {real}
        TCP_CHECK {{
            {check}
        }}
    }}
}}
"""


def server(service: str = "", real: str = "", check: str = "") -> dict[str, Any]:
    conversion = convert_text(MINIMAL_SERVER.format(service=service, real=real, check=check))
    return dict(conversion.data["ipvs"]["services"][0])


def test_keepalived_defaults_are_written_out() -> None:
    svc = server()
    assert svc["check"] == {
        "type": "tcp",
        "interval": 60,
        "timeout": 5,
        "rise": 1,
        "fall": 2,
        "retry_interval": 1,  # keepalived's default delay_before_retry
    }
    assert (svc["protocol"], svc["scheduler"], svc["forward"]) == ("tcp", "wlc", "nat")
    assert svc["on_failure"] == "remove"


def test_timing_is_inherited_checker_then_real_then_virtual_server() -> None:
    svc = server(service="delay_loop 7\nconnect_timeout 4\nretry 5", real="retry 2")
    assert svc["check"] == {
        "type": "tcp",
        "interval": 7,
        "timeout": 4,
        "rise": 1,
        "fall": 3,
        "retry_interval": 1,
    }
    svc = server(service="delay_before_retry 3", real="delay_before_retry 2", check="retry 4")
    assert (svc["check"]["fall"], svc["check"]["retry_interval"]) == (5, 2)
    svc = server(service="delay_loop 7", check="delay_loop 2.5\nconnect_timeout 0.5")
    assert (svc["check"]["interval"], svc["check"]["timeout"]) == (2.5, 0.5)


def test_inhibit_on_failure_at_either_level_drains() -> None:
    assert server(service="inhibit_on_failure")["on_failure"] == "drain"
    assert server(real="inhibit_on_failure")["on_failure"] == "drain"


def test_defaults_carry_comments_in_the_yaml() -> None:
    conversion = convert_text(MINIMAL_SERVER.format(service="", real="", check=""))
    text = to_yaml(conversion.data, comments=conversion.comments)
    assert "on_failure: remove  # keepalived removes a failed real (no inhibit_on_failure)" in text
    assert "interval: 60  # keepalived's default delay_loop" in text
    assert "cleanup_on_exit: true" in text


def test_unknown_keywords_are_reported_never_dropped() -> None:
    conversion = convert_text(
        "global_defs {\n  routr_id x\n}\nvirtual_server 192.0.2.1 80 {\n  lb_algoo rr\n}\n"
        "frobnicate { a b }\n"
    )
    assert reports(conversion) == [
        "k.conf:2: routr_id: not a keepalived 2.2 keyword in global_defs: ignored",
        "k.conf:5: lb_algoo: not a keepalived 2.2 keyword in virtual_server: ignored",
        "k.conf:7: frobnicate: not a keepalived 2.2 keyword in the top level: ignored",
    ]
    assert dict(conversion.outcomes)["a"] is Outcome.DROPPED


def test_what_ipvsd_refuses_is_dropped_with_a_report() -> None:
    conversion = convert_text(
        "virtual_server 192.0.2.1 80 {\n  lb_kind DR\n"
        "  real_server 10.0.0.1 8080 {\n  }\n"
        "  real_server 10.0.0.2 80 {\n  }\n}\n"
    )
    assert service(conversion)["reals"] == [{"address": "10.0.0.2", "port": 80, "weight": 1}]
    assert reports(conversion) == [
        "k.conf:3: real_server: port: forward dr cannot change the port: use 80 (or 0), or "
        "forward: nat: not converted"
    ]


def test_instances_lacking_what_ipvsd_needs_are_reported() -> None:
    conversion = convert_text(
        "vrrp_instance A {\n  interface eth0\n  virtual_ipaddress {\n    10.0.0.1\n  }\n}\n"
        "vrrp_instance B {\n  virtual_router_id 2\n  virtual_ipaddress {\n    10.0.0.2\n  }\n}\n"
        "vrrp_instance C {\n  interface eth0\n  virtual_router_id 3\n"
        "  virtual_ipaddress {\n    bogus\n  }\n}\n"
    )
    assert conversion.data["vrrp"]["instances"] == []
    assert reports(conversion) == [
        "k.conf:1: vrrp_instance: not converted: no virtual_router_id",
        "k.conf:7: vrrp_instance: not converted: no interface (and no default_interface in "
        "global_defs)",
        "k.conf:13: vrrp_instance: not converted: no virtual_ipaddress (an ipvsd instance "
        "owns at least one)",
        "k.conf:17: bogus: not an address: ignored",
    ]


def test_conditional_lines_are_reported() -> None:
    conversion = convert_text(
        "vrrp_instance A {\n  interface eth0\n  virtual_router_id 1\n"
        "@high  priority 170\n@^high priority 85\n  virtual_ipaddress {\n 10.0.0.1\n }\n}\n"
    )
    assert conversion.data["vrrp"]["instances"][0]["priority"] == 85
    assert reports(conversion) == [
        "k.conf:4: priority: read only by `keepalived -i high`: not converted (the import "
        "reads the file as keepalived without -i)",
        "k.conf:5: priority: @^high: converted, as keepalived without -i reads it "
        "(`keepalived -i high` would skip it)",
    ]


def test_advert_int_version_and_vip_options() -> None:
    conversion = convert_text(
        "vrrp_instance A {\n  interface eth0\n  virtual_router_id 1\n  advert_int 0.5\n"
        "  version 3\n  virtual_ipaddress {\n    10.0.0.1/24 dev eth1\n"
        "    10.0.0.2 label eth0:1\n  }\n}\n"
    )
    [instance] = conversion.data["vrrp"]["instances"]
    assert (instance["version"], instance["advert_int"]) == (3, 0.5)
    assert instance["virtual_ipaddresses"] == [
        {"address": "10.0.0.1/24", "dev": "eth1"},
        {"address": "10.0.0.2", "label": "eth0:1"},
    ]
    assert reports(conversion) == []


# --- every keyword keepalived 2.2 accepts is converted or reported -------------------------


def words(text: str) -> list[str]:
    return text.split()


# From keepalived 2.2.8's install_keyword() calls (see keepalived_keywords.py for the files).
GLOBAL_DEFS_22 = words(
    """
process_names process_name vrrp_process_name checker_process_name lvs_process_name
bfd_process_name router_id notification_email_from smtp_server smtp_helo_name
smtp_connect_timeout notification_email smtp_alert startup_script startup_script_timeout
shutdown_script shutdown_script_timeout max_auto_priority min_auto_priority_delay
smtp_alert_vrrp smtp_alert_checker checker_log_all_failures dynamic_interfaces
no_email_faults default_interface disable_local_igmp v3_checksum_as_v2 lvs_timeouts
lvs_flush lvs_flush_on_stop lvs_flush_onstop lvs_sync_daemon vrrp_mcast_group4
vrrp_mcast_group6 vrrp_garp_master_delay vrrp_garp_master_repeat vrrp_garp_master_refresh
vrrp_garp_master_refresh_repeat vrrp_garp_lower_prio_delay vrrp_garp_lower_prio_repeat
vrrp_down_timer_adverts vrrp_garp_interval vrrp_gna_interval vrrp_min_garp
vrrp_garp_extra_if vrrp_vmac_garp_intvl vrrp_lower_prio_no_advert
vrrp_higher_prio_send_advert vrrp_version vrrp_iptables vrrp_ipsets nftables
nftables_priority nftables_ifindex nftables_ipvs nftables_ipvs_priority
nftables_ipvs_start_fwmark nftables_counters vrrp_check_unicast_src
vrrp_skip_check_adv_addr vrrp_strict vrrp_priority vrrp_no_swap vrrp_rt_priority
vrrp_cpu_affinity vrrp_rlimit_rttime vrrp_rlimit_rtime notify_fifo notify_fifo_script
vrrp_notify_fifo vrrp_notify_fifo_script vrrp_notify_priority_changes
fifo_write_vrrp_states_on_reload lvs_notify_fifo lvs_notify_fifo_script checker_priority
checker_no_swap checker_rt_priority checker_cpu_affinity checker_rlimit_rttime
checker_rlimit_rtime bfd_priority bfd_no_swap bfd_rt_priority bfd_cpu_affinity
bfd_rlimit_rttime bfd_rlimit_rtime snmp_socket enable_traps enable_snmp_vrrp
enable_snmp_keepalived enable_snmp_rfc enable_snmp_rfcv2 enable_snmp_rfcv3
enable_snmp_checker enable_dbus dbus_service_name script_user enable_script_security
vrrp_netlink_cmd_rcv_bufs vrrp_netlink_cmd_rcv_bufs_force vrrp_netlink_monitor_rcv_bufs
vrrp_netlink_monitor_rcv_bufs_force process_monitor_rcv_bufs process_monitor_rcv_bufs_force
lvs_netlink_cmd_rcv_bufs lvs_netlink_cmd_rcv_bufs_force lvs_netlink_monitor_rcv_bufs
lvs_netlink_monitor_rcv_bufs_force rs_init_notifies no_checker_emails vrrp_rx_bufs_policy
vrrp_rx_bufs_multiplier vrrp_startup_delay log_unknown_vrids vmac_prefix vmac_addr_prefix
umask random_seed reload_check_config reload_time_file reload_repeat reload_file
include_check config_save_dir tmp_config_directory data_use_instance json_version
"""
)

VRRP_INSTANCE_22 = words(
    """
use_vmac use_vmac_addr vmac_xmit_base use_ipvlan unicast_peer unicast_fault_no_peer
check_unicast_src old_unicast_checksum native_ipv6 state interface vrf dont_track_primary
track_interface track_script track_file track_process track_bfd mcast_src_ip unicast_src_ip
mcast_dst_ip track_src_ip virtual_router_id unicast_ttl version priority advert_int
virtual_ipaddress virtual_ipaddress_excluded no_virtual_ipaddress promote_secondaries
linkbeat_use_polling v3_checksum_as_v2 virtual_routes virtual_rules accept no_accept
skip_check_adv_addr strict_mode preempt nopreempt preempt_delay debug notify_backup
notify_master notify_fault notify_stop notify_deleted notify notify_master_rx_lower_pri
smtp_alert notify_priority_changes lvs_sync_daemon_interface garp_master_delay
garp_master_refresh garp_master_repeat garp_master_refresh_repeat garp_lower_prio_delay
garp_lower_prio_repeat down_timer_adverts timer_expired_backup garp_extra_if
vmac_garp_intvl lower_prio_no_advert higher_prio_send_advert kernel_rx_buf_size
authentication
"""
)

VRRP_SYNC_GROUP_22 = words(
    """
group track_interface track_script track_file track_process track_bfd notify_backup
notify_master notify_fault notify_stop notify smtp_alert global_tracking
sync_group_tracking_weight notify_priority_changes
"""
)

VIRTUAL_SERVER_22 = words(
    """
ip_family retry delay_before_retry warmup connect_timeout delay_loop inhibit_on_failure
lb_algo lvs_sched hashed ops flag-1 flag-2 flag-3 sh-port sh-fallback mh-port mh-fallback
lb_kind lvs_method persistence_engine persistence_timeout persistence_granularity protocol
ha_suspend smtp_alert virtualhost snmp_name alpha omega quorum_up quorum_down quorum
hysteresis weight sorry_server sorry_server_inhibit sorry_server_lvs_method real_server
"""
)

REAL_SERVER_22 = words(
    """
weight lvs_method uthreshold lthreshold inhibit_on_failure notify_up notify_down alpha retry
delay_before_retry warmup connect_timeout delay_loop smtp_alert virtualhost snmp_name
HTTP_GET SSL_GET TCP_CHECK MISC_CHECK SMTP_CHECK DNS_CHECK UDP_CHECK PING_CHECK FILE_CHECK
BFD_CHECK
"""
)

CHECKER_22 = {
    "TCP_CHECK": "connect_ip connect_port bindto bind_port bind_if connect_timeout fwmark "
    "retry delay_before_retry warmup delay_loop alpha log_all_failures",
    "HTTP_GET": "connect_ip connect_port bindto bind_port bind_if connect_timeout fwmark retry "
    "delay_before_retry warmup delay_loop alpha log_all_failures nb_get_retry virtualhost "
    "http_protocol enable_sni fast_recovery url",
    "SSL_GET": "tls_compliant",
    "MISC_CHECK": "retry delay_before_retry warmup delay_loop alpha log_all_failures misc_path "
    "misc_timeout misc_dynamic user",
    "SMTP_CHECK": "helo_name host connect_ip connect_port bindto connect_timeout retry",
    "UDP_CHECK": "payload require_reply min_reply_length max_reply_length connect_port",
    "DNS_CHECK": "type name connect_port retry",
    "PING_CHECK": "connect_ip bindto connect_timeout delay_loop",
}

URL_22 = words(
    """
path digest status_code virtualhost regex regex_no_match regex_options regex_min_offset
regex_max_offset regex_stack tls_compliant
"""
)

ROOT_22 = words(
    """
global_defs linkbeat_use_polling net_namespace net_namespace_ipvs namespace_with_ipsets
use_pid_dir instance child_wait_time track_group static_ipaddress static_routes static_rules
vrrp_sync_group garp_group linkbeat_interfaces vrrp_instance vrrp_script vrrp_track_process
interface_up_down_delays SSL virtual_server_group virtual_server bfd_instance track_file
vrrp_track_file include
"""
)

INSTANCE = (
    "vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 1\n {line}\n"
    " virtual_ipaddress {{\n  10.0.0.1\n }}\n}}\n"
)


def assert_known(conversion: Conversion, keyword: str) -> None:
    text = "\n".join(reports(conversion))
    assert UNKNOWN not in text, text
    assert UNHANDLED not in text, text
    outcomes = [outcome for directive, outcome in conversion.outcomes if directive == keyword]
    assert outcomes, f"{keyword} was not read"


@pytest.mark.parametrize("keyword", GLOBAL_DEFS_22)
def test_every_global_defs_keyword(keyword: str) -> None:
    assert_known(convert_text(f"global_defs {{\n {keyword} 1\n}}\n"), keyword)


@pytest.mark.parametrize("keyword", VRRP_INSTANCE_22)
def test_every_vrrp_instance_keyword(keyword: str) -> None:
    assert_known(convert_text(INSTANCE.format(line=f"{keyword} 1")), keyword)


@pytest.mark.parametrize("keyword", VRRP_SYNC_GROUP_22)
def test_every_vrrp_sync_group_keyword(keyword: str) -> None:
    text = INSTANCE.format(line="") + f"vrrp_sync_group G {{\n group {{ VI_1 }}\n {keyword} 1\n}}\n"
    assert_known(convert_text(text), keyword)


@pytest.mark.parametrize("keyword", VIRTUAL_SERVER_22)
def test_every_virtual_server_keyword(keyword: str) -> None:
    text = f"virtual_server 192.0.2.1 80 {{\n {keyword} 1\n real_server 10.0.0.1 80 {{\n }}\n}}\n"
    assert_known(convert_text(text), keyword)


@pytest.mark.parametrize("keyword", REAL_SERVER_22)
def test_every_real_server_keyword(keyword: str) -> None:
    text = f"virtual_server 192.0.2.1 80 {{\n real_server 10.0.0.1 80 {{\n {keyword} 1\n }}\n}}\n"
    assert_known(convert_text(text), keyword)


@pytest.mark.parametrize(
    ("checker", "keyword"),
    [(checker, keyword) for checker, words in CHECKER_22.items() for keyword in words.split()],
)
def test_every_checker_keyword(checker: str, keyword: str) -> None:
    text = (
        f"virtual_server 192.0.2.1 80 {{\n real_server 10.0.0.1 80 {{\n  {checker} {{\n"
        f"   {keyword} 1\n  }}\n }}\n}}\n"
    )
    assert_known(convert_text(text), keyword)


@pytest.mark.parametrize("keyword", URL_22)
def test_every_url_keyword(keyword: str) -> None:
    text = (
        "virtual_server 192.0.2.1 80 {\n real_server 10.0.0.1 80 {\n  SSL_GET {\n   url {\n"
        f"    path /\n    {keyword} 1\n   }}\n  }}\n }}\n}}\n"
    )
    assert_known(convert_text(text), keyword)


@pytest.mark.parametrize("keyword", ROOT_22)
def test_every_top_level_keyword(keyword: str) -> None:
    assert_known(convert_text(f"{keyword} x\n"), keyword)


# --- the command line: report lines and exit codes ------------------------------------------


def test_reports_go_to_stderr_one_line_each_and_exit_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = DATA / "k8s_api.conf"
    assert main(["import", "keepalived", str(path)]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines == reports(converted(path))
    assert len(lines) == 6
    for line in lines:
        match = REPORT_LINE.match(line)
        assert match is not None, line
        assert match["file"] == str(path), line
    assert yaml.safe_load(captured.out)["vrrp"]["instances"][0]["name"] == "VI_K8S"
    header = [line for line in captured.out.splitlines() if line.startswith("#")]
    assert f"#   {lines[0]}" in header  # the report is also in the YAML's header


def test_a_clean_conversion_reports_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(
        "vrrp_instance VI_1 {\n  interface eth1\n  virtual_router_id 51\n  priority 100\n"
        "  virtual_ipaddress {\n    192.168.1.200/24\n  }\n}\n"
    )
    assert main(["import", "keepalived", str(conf), "--strict"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "0 reported" in captured.out


def test_unparseable_file_exits_1_with_file_line_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "keepalived.conf"
    conf.write_text("global_defs {\n  router_id x\n\nvrrp_instance A {\n}\n")
    assert main(["import", "keepalived", str(conf)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"{conf}:1: the block of 'global_defs' (line 1) is never closed\n"


def test_missing_file_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "keepalived", "/nonexistent.conf"]) == 1
    assert (
        capsys.readouterr().err == "/nonexistent.conf:0: cannot read: No such file or directory\n"
    )


def test_strict_exits_1_and_writes_nothing_when_anything_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ipvsd.yaml"
    out.write_text("previous\n")
    path = DATA / "k8s_api.conf"
    assert main(["import", "keepalived", str(path), "--strict", "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[:-1] == reports(converted(path))
    assert lines[-1] == "ipvsd import: 6 directive(s) reported; --strict: nothing written"
    assert out.read_text() == "previous\n"


def test_output_file_is_replaced_keeping_its_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ipvsd.yaml"
    out.write_text("old\n")
    out.chmod(0o640)
    assert main(["import", "keepalived", str(DATA / "vsg.conf"), "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert out.stat().st_mode & 0o777 == 0o640
    assert load_config(out).ipvs.services[4].fwmark == 7
    fresh = tmp_path / "new.yaml"
    assert main(["import", "keepalived", str(DATA / "vsg.conf"), "-o", str(fresh)]) == 0
    assert fresh.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_import_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["import", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "FILE:LINE: directive: what happens instead" in text
    assert "ipvsadm -Sn | ipvsd import ipvsadm" in text
    with pytest.raises(SystemExit) as exited:
        main(["import"])
    assert exited.value.code == 2


# --- keepalived's own samples, when a checkout is at hand ----------------------------------

KEEPALIVED_GIT = Path(os.environ.get("KEEPALIVED_GIT_DIR", "/work/.mirror/acassen+keepalived/repo"))


def _samples() -> list[str]:
    if not KEEPALIVED_GIT.is_dir():
        return []
    listing = subprocess.run(
        ["git", f"--git-dir={KEEPALIVED_GIT}", "ls-tree", "--name-only", "HEAD", "doc/samples/"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return [name for name in listing if Path(name).name.startswith("keepalived.conf.")]


@pytest.mark.skipif(
    not _samples(),
    reason=f"no local keepalived checkout at {KEEPALIVED_GIT} (set KEEPALIVED_GIT_DIR): "
    "keepalived's doc/samples are surveyed only where one was fetched",
)
@pytest.mark.parametrize("sample", _samples() or ["none"])
def test_keepalived_samples(sample: str, tmp_path: Path) -> None:
    text = subprocess.run(
        ["git", f"--git-dir={KEEPALIVED_GIT}", "show", f"HEAD:{sample}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = tmp_path / Path(sample).name
    path.write_text(text)
    conversion = converted(path)
    assert UNHANDLED not in "\n".join(reports(conversion))
    out = tmp_path / "ipvsd.yaml"
    out.write_text(to_yaml(conversion.data, comments=conversion.comments))
    load_config(out)
