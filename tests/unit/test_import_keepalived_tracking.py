"""``ipvsd import keepalived``: vrrp_script, track_script, track_file, the per-state notify
programs, garp_master_refresh and dont_track_primary are converted (issue 13 item 4)."""

from __future__ import annotations

from ipvsd.importers.report import Outcome
from tests.unit.test_import_keepalived import DATA, convert_text, converted, reports

TRACKING = DATA / "tracking.conf"


def test_scripts_files_notify_and_garp_refresh_convert() -> None:
    conversion = converted(TRACKING)
    vrrp = conversion.data["vrrp"]
    vi1, vi2 = vrrp["instances"]
    assert vrrp["scripts"] == [
        {
            "name": "chk_haproxy",
            "command": ["/usr/bin/killall", "-0", "haproxy"],  # split, run without a shell
            "interval": 2,
            "rise": 3,
            "fall": 2,
            "weight": -30,
            "user": "nobody",
        },
        {"name": "chk_reverse", "command": ["/usr/local/bin/chk"], "weight": 10},
    ]
    assert vi1["track_scripts"] == [
        {"script": "chk_haproxy"},  # the script's weight, as keepalived
        {"script": "chk_reverse", "weight": 5},
    ]
    # The file's weight, or the instance's; `reverse` multiplies by -1 in keepalived.
    assert vi1["track_files"] == [
        {"path": "/run/lb/maintenance", "weight": -50},
        {"path": "/run/lb/prio", "weight": -2},
    ]
    assert vi1["notify_master"] == ["/etc/lb/to-master.sh", "VI_1", "two words"]
    assert vi1["notify_backup"] == ["/etc/lb/to-backup.sh"]
    assert vi1["notify_fault"] == ["/etc/lb/to-fault.sh"]
    assert vi1["notify_stop"] == ["/etc/lb/to-stop.sh"]
    assert (vi1["garp_refresh"], vi1["dont_track_primary"]) == (30, True)
    assert vi2["garp_refresh"] == 60  # global_defs' vrrp_garp_master_refresh
    assert "dont_track_primary" not in vi2
    assert vrrp["sync_groups"] == [
        {
            "name": "G",
            "instances": ["VI_1", "VI_2"],
            "notify": "/etc/lb/group-notify.sh",
            "notify_master": ["/etc/lb/group.sh", "master"],
            "notify_stop": ["/etc/lb/group.sh"],
        }
    ]


def test_what_changes_meaning_is_reported_at_its_line() -> None:
    conversion = converted(TRACKING)
    lines = {int(line.split(":")[1]): line.split(": ", 1)[1] for line in reports(conversion)}
    assert sorted(lines) == [15, 16, 21, 27, 44, 52, 55, 57], lines
    assert lines[15].startswith("user: group nogroup: ipvsd runs the script with nobody's")
    assert lines[21].startswith("weight: reverse: not supported")
    assert lines[44] == (
        "chk_missing: no converted vrrp_script of that name: left out (the priority no longer "
        "follows it)"
    )
    assert lines[52].startswith("garp_master_refresh_repeat: ipvsd sends one GARP per VIP")
    assert lines[55].startswith("notify_fault: runs as lbuser in keepalived;")
    assert lines[57].startswith("notify_deleted: ")
    outcomes = [outcome for directive, outcome in conversion.outcomes if directive == "script"]
    assert outcomes == [Outcome.CONVERTED, Outcome.CONVERTED]


def test_a_refused_script_drops_only_its_track_entry() -> None:
    """ipvsd refuses the script (no such user here): the instance stays, without it."""
    text = TRACKING.read_text().replace("user nobody nogroup", "user no-such-user-here")
    conversion = convert_text(text)
    vi1 = conversion.data["vrrp"]["instances"][0]
    assert vi1["name"] == "VI_1"
    assert vi1["track_scripts"] == [{"script": "chk_reverse", "weight": 5}]
    assert [s["name"] for s in conversion.data["vrrp"]["scripts"]] == ["chk_reverse"]
    assert "k.conf:42: chk_haproxy: script: unknown script 'chk_haproxy'" in "\n".join(
        reports(conversion)
    )


def test_a_script_without_a_script_line_is_not_converted() -> None:
    conversion = convert_text(
        "vrrp_script chk { interval 2 }\n"
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 1\n"
        " virtual_ipaddress {\n  10.0.0.1\n }\n track_script {\n  chk\n }\n}\n"
    )
    assert "scripts" not in conversion.data["vrrp"]
    assert "track_scripts" not in conversion.data["vrrp"]["instances"][0]
    assert reports(conversion)[0] == "k.conf:1: vrrp_script: has no script to run: not converted"
