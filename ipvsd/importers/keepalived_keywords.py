"""keepalived 2.2 keywords that ipvsd does not carry over, and what happens instead.

The converter (`ipvsd.importers.keepalived` and its parts) handles the
keywords it converts in code; every other keyword keepalived 2.2 accepts in a
block is listed here with its report message, so that the report says why
(a keyword in no table is reported as unknown). The lists come from
keepalived 2.2.8's parsers: ``install_keyword`` in
keepalived/core/global_parser.c, keepalived/vrrp/vrrp_parser.c,
keepalived/check/check_parser.c and the checkers (check_api.c, check_http.c,
check_misc.c, check_smtp.c...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

EMAIL = "ipvsd sends no email: alert on its Prometheus metrics instead: ignored"
SNMP = "ipvsd has no SNMP or D-Bus interface (use `ipvsd status --json` and /metrics): ignored"
TUNING = "a keepalived process or buffer setting with no ipvsd equivalent: ignored"
NOTIFY_EVENT = (
    "ipvsd runs notify programs on state changes only (notify, notify_master, notify_backup, "
    "notify_fault, notify_stop; a removed instance is told STOP): not converted"
)
NOT_SUPPORTED = "not supported by ipvsd: ignored"
GARP = (
    "ipvsd sends gratuitous ARPs on becoming MASTER (garp_repeat, garp_delay) and every "
    "garp_refresh seconds while MASTER only: ignored"
)
FIREWALL = "ipvsd sets no iptables/nftables rules: ignored"
V3_CHECKSUM = (
    "ipvsd's IPv4 VRRPv3 checksum always covers the pseudo-header (keepalived's default): "
    "peers with v3_checksum_as_v2 are refused as 'checksum': ignored"
)
TRACKING = (
    "ipvsd tracks interfaces, scripts and files only: not converted; the instance's "
    "priority no longer follows it"
)
GROUP_TRACKING = (
    "ipvsd tracks per instance: not converted (add it to each member's track_interfaces, "
    "track_scripts or track_files)"
)
VMAC = (
    "ipvsd's vmac is a macvlan that adverts leave from (keepalived's use_vmac): "
    "this variant is not supported: ignored"
)


def _all(message: str, keywords: Iterable[str]) -> dict[str, str]:
    return dict.fromkeys(keywords, message)


ROOT: Mapping[str, str] = {
    **_all(
        "a keepalived process setting with no ipvsd equivalent: ignored",
        ("linkbeat_use_polling", "use_pid_dir", "instance", "child_wait_time"),
    ),
    **_all(
        "ipvsd runs in the network namespace it is started in (e.g. `ip netns exec`): ignored",
        ("net_namespace", "net_namespace_ipvs", "namespace_with_ipsets"),
    ),
    "track_group": NOT_SUPPORTED,
    **_all(
        "ipvsd manages no static addresses, routes or rules: not converted (configure them "
        "in the host's network configuration)",
        ("static_ipaddress", "static_routes", "static_rules"),
    ),
    "garp_group": GARP,
    "linkbeat_interfaces": "ipvsd follows link state through rtnetlink events: ignored",
    "vrrp_track_process": TRACKING,
    "interface_up_down_delays": NOT_SUPPORTED,
    "SSL": (
        "ipvsd's https checks take their client certificate per check (client_cert, "
        "client_key) and verify no server certificate unless check.verify_tls: not converted"
    ),
    "bfd_instance": "ipvsd has no BFD: not converted",
}

GLOBAL_DEFS: Mapping[str, str] = {
    **_all(
        EMAIL,
        (
            "notification_email_from",
            "smtp_server",
            "smtp_helo_name",
            "smtp_connect_timeout",
            "notification_email",
            "smtp_alert",
            "smtp_alert_vrrp",
            "smtp_alert_checker",
            "no_email_faults",
            "no_checker_emails",
        ),
    ),
    **_all(
        "ipvsd runs no start-up or shutdown scripts (use the systemd unit's ExecStartPre= / "
        "ExecStopPost=): not converted",
        ("startup_script", "startup_script_timeout", "shutdown_script", "shutdown_script_timeout"),
    ),
    **_all(
        "ipvsd runs notify and exec-check programs as its own user (root); run them through "
        "`runuser`/`setpriv` to drop privileges: ignored",
        ("script_user", "enable_script_security"),
    ),
    **_all(
        SNMP,
        (
            "snmp_socket",
            "enable_traps",
            "enable_snmp_vrrp",
            "enable_snmp_keepalived",
            "enable_snmp_rfc",
            "enable_snmp_rfcv2",
            "enable_snmp_rfcv3",
            "enable_snmp_checker",
            "enable_dbus",
            "dbus_service_name",
        ),
    ),
    **_all(
        "ipvsd has no notify FIFO (use a notify program, or its metrics): ignored",
        (
            "notify_fifo",
            "notify_fifo_script",
            "vrrp_notify_fifo",
            "vrrp_notify_fifo_script",
            "vrrp_notify_priority_changes",
            "fifo_write_vrrp_states_on_reload",
            "lvs_notify_fifo",
            "lvs_notify_fifo_script",
        ),
    ),
    **_all(
        FIREWALL,
        (
            "vrrp_iptables",
            "vrrp_ipsets",
            "nftables",
            "nftables_priority",
            "nftables_ifindex",
            "nftables_ipvs",
            "nftables_ipvs_priority",
            "nftables_ipvs_start_fwmark",
            "nftables_counters",
        ),
    ),
    **_all(
        GARP,
        (
            "vrrp_garp_lower_prio_delay",
            "vrrp_garp_lower_prio_repeat",
            "vrrp_garp_interval",
            "vrrp_gna_interval",
            "vrrp_min_garp",
            "vrrp_garp_extra_if",
            "vrrp_vmac_garp_intvl",
        ),
    ),
    **_all(
        TUNING,
        (
            "process_names",
            "process_name",
            "vrrp_process_name",
            "checker_process_name",
            "lvs_process_name",
            "bfd_process_name",
            "max_auto_priority",
            "min_auto_priority_delay",
            "vrrp_priority",
            "vrrp_no_swap",
            "vrrp_rt_priority",
            "vrrp_cpu_affinity",
            "vrrp_rlimit_rttime",
            "vrrp_rlimit_rtime",
            "checker_priority",
            "checker_no_swap",
            "checker_rt_priority",
            "checker_cpu_affinity",
            "checker_rlimit_rttime",
            "checker_rlimit_rtime",
            "bfd_priority",
            "bfd_no_swap",
            "bfd_rt_priority",
            "bfd_cpu_affinity",
            "bfd_rlimit_rttime",
            "bfd_rlimit_rtime",
            "vrrp_netlink_cmd_rcv_bufs",
            "vrrp_netlink_cmd_rcv_bufs_force",
            "vrrp_netlink_monitor_rcv_bufs",
            "vrrp_netlink_monitor_rcv_bufs_force",
            "process_monitor_rcv_bufs",
            "process_monitor_rcv_bufs_force",
            "lvs_netlink_cmd_rcv_bufs",
            "lvs_netlink_cmd_rcv_bufs_force",
            "lvs_netlink_monitor_rcv_bufs",
            "lvs_netlink_monitor_rcv_bufs_force",
            "vrrp_rx_bufs_policy",
            "vrrp_rx_bufs_multiplier",
            "umask",
            "random_seed",
            "reload_check_config",
            "reload_time_file",
            "reload_repeat",
            "reload_file",
            "include_check",
            "config_save_dir",
            "tmp_config_directory",
            "data_use_instance",
            "json_version",
        ),
    ),
    "checker_log_all_failures": "ipvsd logs every health transition (health.*): ignored",
    "dynamic_interfaces": (
        "ipvsd waits in FAULT for a missing interface and starts when it appears: ignored"
    ),
    "disable_local_igmp": NOT_SUPPORTED,
    "lvs_flush": (
        "ipvsd never flushes the IPVS table: at start it adopts the services of its config "
        "and leaves the others alone: ignored"
    ),
    "vrrp_mcast_group4": "ipvsd sends multicast adverts to 224.0.0.18 (RFC 3768): ignored",
    "vrrp_mcast_group6": "ipvsd sends IPv6 multicast adverts to ff02::12 (RFC 5798): ignored",
    "v3_checksum_as_v2": V3_CHECKSUM,
    "vrrp_down_timer_adverts": "ipvsd's Master_Down_Interval is RFC 3768's (3 adverts): ignored",
    "vrrp_lower_prio_no_advert": NOT_SUPPORTED,
    "vrrp_higher_prio_send_advert": NOT_SUPPORTED,
    "vrrp_check_unicast_src": NOT_SUPPORTED,
    "vrrp_skip_check_adv_addr": NOT_SUPPORTED,
    "vrrp_strict": (
        "ipvsd always follows RFC 3768 on the wire, but adds no firewall rules and accepts "
        "more than 20 VIPs: ignored"
    ),
    "vrrp_startup_delay": NOT_SUPPORTED,
    "log_unknown_vrids": "ipvsd counts adverts of other VRIDs in "
    "ipvsd_vrrp_invalid_packets_total: ignored",
    "vmac_prefix": VMAC,
    "vmac_addr_prefix": VMAC,
    "rs_init_notifies": "ipvsd runs no real-server notify programs: ignored",
}

VRRP_INSTANCE: Mapping[str, str] = {
    **_all(VMAC, ("use_vmac_addr", "vmac_xmit_base", "use_ipvlan", "garp_extra_if")),
    "vmac_garp_intvl": VMAC,
    "unicast_fault_no_peer": NOT_SUPPORTED,
    "check_unicast_src": NOT_SUPPORTED,
    "old_unicast_checksum": (
        "ipvsd checksums unicast VRRPv3 adverts with the real destination, not keepalived "
        "< 1.3.6's multicast group: ignored"
    ),
    "native_ipv6": "ipvsd takes an instance's family from its VIPs: not converted",
    "vrf": "ipvsd binds no VRF: ignored",
    "track_process": TRACKING,
    "track_bfd": TRACKING,
    "mcast_src_ip": ("ipvsd sends multicast adverts from the interface's primary address: ignored"),
    "mcast_dst_ip": "ipvsd sends multicast adverts to 224.0.0.18 (RFC 3768): ignored",
    "track_src_ip": NOT_SUPPORTED,
    "unicast_ttl": "ipvsd sends adverts with TTL 255 (RFC 3768 §5.2.3): ignored",
    "no_virtual_ipaddress": "ipvsd instances own at least one VIP: ignored",
    "promote_secondaries": NOT_SUPPORTED,
    "linkbeat_use_polling": "ipvsd follows link state through rtnetlink events: ignored",
    "v3_checksum_as_v2": V3_CHECKSUM,
    "skip_check_adv_addr": NOT_SUPPORTED,
    "strict_mode": "ipvsd always follows RFC 3768 on the wire but adds no firewall rules: ignored",
    "debug": "use `ipvsd run --log-level debug`: ignored",
    **_all(NOTIFY_EVENT, ("notify_deleted", "notify_master_rx_lower_pri")),
    "smtp_alert": EMAIL,
    "notify_priority_changes": NOT_SUPPORTED,
    **_all(
        GARP,
        (
            "garp_lower_prio_delay",
            "garp_lower_prio_repeat",
        ),
    ),
    "down_timer_adverts": "ipvsd's Master_Down_Interval is RFC 3768's (3 adverts): ignored",
    "timer_expired_backup": NOT_SUPPORTED,
    "lower_prio_no_advert": NOT_SUPPORTED,
    "higher_prio_send_advert": NOT_SUPPORTED,
    "kernel_rx_buf_size": TUNING,
}

VRRP_SYNC_GROUP: Mapping[str, str] = {
    "track_interface": GROUP_TRACKING,
    "track_script": GROUP_TRACKING,
    "track_file": GROUP_TRACKING,
    "track_process": TRACKING,
    "track_bfd": TRACKING,
    "smtp_alert": EMAIL,
    "global_tracking": NOT_SUPPORTED,
    "sync_group_tracking_weight": NOT_SUPPORTED,
    "notify_priority_changes": NOT_SUPPORTED,
}

VIRTUAL_SERVER: Mapping[str, str] = {
    "hashed": "a flag the kernel sets itself: ignored",
    "smtp_alert": EMAIL,
    "snmp_name": SNMP,
    "weight": "ipvsd has no virtual server weight: ignored",
}

REAL_SERVER: Mapping[str, str] = {
    "smtp_alert": EMAIL,
    "snmp_name": SNMP,
}

CHECKER: Mapping[str, str] = {
    "bind_port": "ipvsd's checks connect from any source port: ignored",
    "bind_if": "ipvsd's checks go out the route's interface: ignored",
    "fwmark": "ipvsd's checks set no firewall mark: ignored",
    "log_all_failures": "ipvsd logs every health transition (health.*): ignored",
    "warmup": "ipvsd checks a real as soon as it starts (no random warm-up delay): ignored",
    "http_protocol": "ipvsd's http checks send HTTP/1.1 with a Host header: ignored",
    "enable_sni": "ipvsd's https checks send the check's host as SNI: ignored",
    "fast_recovery": "ipvsd checks every interval, down or up: ignored",
    "tls_compliant": "ipvsd's https checks close TLS properly: ignored",
    "user": (
        "ipvsd runs exec checks as its own user (root); run the command through "
        "`runuser`/`setpriv` to drop privileges: ignored"
    ),
    "helo_name": "only SMTP_CHECK sends a HELO: ignored",
    "host": "only SMTP_CHECK has host blocks: not converted",
}

URL: Mapping[str, str] = {
    "regex_no_match": "ipvsd's body_regex must match (no inverted match): not converted",
    "regex_options": "ipvsd's body_regex is a Python regex without options: ignored",
    "regex_min_offset": "ipvsd searches the whole body: ignored",
    "regex_max_offset": "ipvsd searches the whole body: ignored",
    "regex_stack": "ipvsd searches the whole body: ignored",
    "tls_compliant": "ipvsd's https checks close TLS properly: ignored",
}

UNSUPPORTED_CHECKERS: Mapping[str, str] = {
    "FILE_CHECK": "ipvsd has no file check (no dynamic weight): not converted",
    "BFD_CHECK": "ipvsd has no BFD: not converted",
}
