"""The drains file (``ipvsd.daemon.admin_state``): format, atomic writes, bad files.

The daemon-level paths (a drain outliving a restart, a torn file at start, a
drain refused because the state directory cannot be written) are in
``test_daemon.py``; these tests pin the file itself.
"""

from __future__ import annotations

import errno
import json
import os
from ipaddress import ip_address
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ipvsd.config import Config
from ipvsd.daemon.admin_state import AdminStateError, DrainStore, decode, encode
from ipvsd.model import DestKey, Family, Protocol, RealId, ServiceKey, fwmark_key

WEB = ServiceKey(Family.INET, Protocol.TCP, ip_address("192.168.1.200"), 80)
DNS = ServiceKey(Family.INET, Protocol.UDP, ip_address("192.168.1.200"), 53)
WEB6 = ServiceKey(Family.INET6, Protocol.SCTP, ip_address("2001:db8::200"), 443)
MARK = fwmark_key(Family.INET, 7)
MARK6 = fwmark_key(Family.INET6, 9)
REAL = DestKey(ip_address("192.168.1.30"), 80)
REAL6 = DestKey(ip_address("2001:db8::30"), 443)
EVERY_KIND: set[RealId] = {
    (WEB, REAL),
    (DNS, DestKey(ip_address("192.168.1.30"), 53)),
    (WEB6, REAL6),
    (MARK, DestKey(ip_address("192.168.1.31"), 0)),
    (MARK6, REAL6),
}


def test_the_file_names_services_and_reals_as_the_command_line_does(tmp_path: Path) -> None:
    store = DrainStore(tmp_path / "state")
    store.save(EVERY_KIND)
    document = json.loads(store.path.read_text())
    assert store.path == tmp_path / "state" / "drains.json"
    assert document == {
        "version": 1,
        "drains": [
            {"service": "192.168.1.200:80", "real": "192.168.1.30:80"},
            {"service": "fwmark:7", "real": "192.168.1.31:0"},
            {"service": "fwmark:9/ipv6", "real": "[2001:db8::30]:443"},
            {"service": "sctp/[2001:db8::200]:443", "real": "[2001:db8::30]:443"},
            {"service": "udp/192.168.1.200:53", "real": "192.168.1.30:53"},
        ],
    }


def test_what_is_saved_loads_back(tmp_path: Path) -> None:
    store = DrainStore(tmp_path)
    store.save(EVERY_KIND)
    assert DrainStore(tmp_path).load() == EVERY_KIND
    store.save(set())
    assert store.load() == set()


def test_no_file_is_no_drain_and_no_complaint(tmp_path: Path) -> None:
    with capture_logs() as logs:
        assert DrainStore(tmp_path / "never-written").load() == set()
    assert logs == []


def test_a_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = DrainStore(tmp_path)
    store.save({(WEB, REAL)})
    store.save(set())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drains.json"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"version": 1, "drains": [{"service": "192.168.1.200:80", "re', "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"version": 2, "drains": []}', "version 2, expected 1"),
        ('{"version": 1, "drains": {}}', '"drains" is not a list'),
        ('{"version": 1, "drains": [{"service": "192.168.1.200", "real": "x"}]}', "drains[0]"),
        ('{"version": 1, "drains": [{"service": "tcp/1.2.3.4:80", "real": 7}]}', "drains[0]"),
    ],
)
def test_a_bad_file_is_reported_kept_aside_and_means_no_drain(
    tmp_path: Path, text: str, reason: str
) -> None:
    store = DrainStore(tmp_path)
    store.path.write_text(text)
    with capture_logs() as logs:
        assert store.load() == set()
    [event] = logs
    assert event["event"] == "state.drains_unreadable"
    assert event["log_level"] == "error"
    assert event["path"] == str(store.path)
    assert reason in event["reason"]
    aside = tmp_path / "drains.json.corrupt"
    assert event["kept_aside"] == str(aside)
    assert aside.read_text() == text, "kept for a human to look at"
    assert not store.path.exists()
    store.save({(WEB, REAL)})
    assert store.load() == {(WEB, REAL)}, "the next save starts a good file"


def test_a_file_that_cannot_be_read_is_reported(tmp_path: Path) -> None:
    store = DrainStore(tmp_path)
    store.path.mkdir()  # EISDIR: unreadable even for root
    with capture_logs() as logs:
        assert store.load() == set()
    [event] = logs
    assert event["event"] == "state.drains_unreadable"
    assert event["path"] == str(store.path)
    assert "directory" in event["reason"]


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    store = DrainStore(tmp_path)
    store.path.write_bytes(b'{"version": 1, "drains": ["\xff\xfe"]}')
    with capture_logs() as logs:
        assert store.load() == set()
    assert [event["event"] for event in logs] == ["state.drains_unreadable"]


def test_a_directory_that_cannot_be_made_fails_the_save(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = DrainStore(blocker / "state")  # ENOTDIR, even for root
    with pytest.raises(AdminStateError, match=rf"cannot write {blocker}/state/drains.json: "):
        store.save({(WEB, REAL)})


def test_a_full_disk_fails_the_save_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DrainStore(tmp_path)
    store.save({(WEB, REAL)})
    before = store.path.read_text()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(AdminStateError, match="No space left on device"):
        store.save(set())
    assert store.path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drains.json"], "temp file removed"


def test_encode_is_stable_and_decode_inverts_it() -> None:
    text = encode(EVERY_KIND)
    assert text == encode(set(reversed(sorted(EVERY_KIND, key=str))))
    assert decode(text) == EVERY_KIND


def test_the_systemd_unit_makes_the_default_state_dir_and_keeps_it_writable() -> None:
    """ProtectSystem=strict makes /var read-only; StateDirectory= is the way out."""
    unit = Path(__file__).resolve().parents[2] / "systemd" / "ipvsd.service"
    lines = unit.read_text().splitlines()
    assert "ProtectSystem=strict" in lines
    [state] = [line for line in lines if line.startswith("StateDirectory=")]
    default = Config.model_fields["state_dir"].default
    assert default == "/var/lib/" + state.removeprefix("StateDirectory=")
