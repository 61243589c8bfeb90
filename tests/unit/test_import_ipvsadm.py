"""``ipvsd import ipvsadm``: ``ipvsadm -Sn`` rules → an ipvsd config, reports and exit codes."""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from ipvsd.cli import main
from ipvsd.config import load_config
from ipvsd.importers.emit import to_yaml
from ipvsd.importers.ipvsadm import convert
from ipvsd.importers.report import Conversion, Outcome, SourceError

# What ipvsadm 1.31 -Sn prints for a table with every kind of service and real.
SAVED = textwrap.dedent(
    """\
    -A -t 192.168.1.200:80 -s rr
    -a -t 192.168.1.200:80 -r 192.168.1.30:80 -m -w 1
    -a -t 192.168.1.200:80 -r 192.168.1.40:8080 -m -w 2
    -A -t 192.168.1.200:443 -s wlc -p 300 -M 255.255.255.0
    -a -t 192.168.1.200:443 -r 192.168.1.30:443 -g -w 1
    -a -t 192.168.1.200:443 -r 192.168.1.40:443 -g -w 1
    -A -f 10 -s sh -b sh-port,sh-fallback
    -a -f 10 -r 192.168.1.30:0 -g -w 1
    -A -f 11 -6 -s mh -p 60 -M 64
    -a -f 11 -6 -r [2001:db8::30]:0 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
    -A -u [2001:db8::200]:53 -s rr --pe sip
    -a -u [2001:db8::200]:53 -r [2001:db8::30]:53 -m -w 1
    -A --sctp-service 192.168.1.200:3868 -s lc
    -a --sctp-service 192.168.1.200:3868 -r 192.168.1.30:3868 -i -w 5
    """
)
REPORT_LINE = re.compile(r"^[^:]+:\d+: [^:]+: .+$")


def services(conversion: Conversion) -> list[dict[str, object]]:
    found: list[dict[str, object]] = conversion.data["ipvs"]["services"]
    return found


def test_ipvsadm_save_output_converts_exactly() -> None:
    conversion = convert(SAVED, "rules")
    assert conversion.reports == ()
    assert services(conversion) == [
        {
            "address": "192.168.1.200",
            "port": 80,
            "protocol": "tcp",
            "scheduler": "rr",
            "forward": "nat",
            "reals": [
                {"address": "192.168.1.30", "port": 80, "weight": 1},
                {"address": "192.168.1.40", "port": 8080, "weight": 2},
            ],
        },
        {
            "address": "192.168.1.200",
            "port": 443,
            "protocol": "tcp",
            "scheduler": "wlc",
            "forward": "dr",
            "persistence_timeout": 300,
            "persistence_netmask": 24,
            "reals": [
                {"address": "192.168.1.30", "port": 443, "weight": 1},
                {"address": "192.168.1.40", "port": 443, "weight": 1},
            ],
        },
        {
            "fwmark": 10,
            "scheduler": "sh",
            "scheduler_flags": ["sh-port", "sh-fallback"],
            "forward": "dr",
            "reals": [{"address": "192.168.1.30", "port": 0, "weight": 1}],
        },
        {
            "fwmark": 11,
            "family": "ipv6",
            "scheduler": "mh",
            "forward": "tunnel",
            "persistence_timeout": 60,
            "persistence_netmask": 64,
            "reals": [
                {
                    "address": "2001:db8::30",
                    "port": 0,
                    "weight": 1,
                    "tunnel": {"type": "gue", "port": 6080, "checksum": "csum"},
                }
            ],
        },
        {
            "address": "2001:db8::200",
            "port": 53,
            "protocol": "udp",
            "scheduler": "rr",
            "forward": "nat",
            "persistence_engine": "sip",
            "reals": [{"address": "2001:db8::30", "port": 53, "weight": 1}],
        },
        {
            "address": "192.168.1.200",
            "port": 3868,
            "protocol": "sctp",
            "scheduler": "lc",
            "forward": "tunnel",
            "reals": [{"address": "192.168.1.30", "port": 3868, "weight": 5}],
        },
    ]
    assert {outcome for _, outcome in conversion.outcomes} == {Outcome.CONVERTED}
    assert len(conversion.outcomes) == 14


def test_the_output_loads_with_the_real_config_loader(tmp_path: Path) -> None:
    conversion = convert(SAVED, "rules")
    out = tmp_path / "ipvsd.yaml"
    out.write_text(to_yaml(conversion.data, header=["test"], comments=conversion.comments))
    config = load_config(out)
    assert len(config.ipvs.services) == 6
    assert yaml.safe_load(out.read_text()) == conversion.data
    assert "ipvsadm has no health checks" in out.read_text()


def test_rule_files_written_by_hand() -> None:
    text = textwrap.dedent(
        """\
        # restore script
        ipvsadm -C
        ipvsadm --add-service --tcp-service 10.0.0.1:80 --scheduler wrr --persistent
        ipvsadm -a -t 10.0.0.1:80 -r 10.0.1.1 -m -w 3 -x 100 -y 50
        ipvsadm -a -t 10.0.0.1:80 -r 10.0.1.2:8080 --masquerading
        ipvsadm -a -t 10.0.0.1:80 -r 10.0.1.3:80
        -e -t 10.0.0.1:80 -r 10.0.1.3:80 -m -w 0
        -A -u 10.0.0.1:514 -s rr -o
        -a -u 10.0.0.1:514 -r 10.0.1.1:514 -m
        -d -u 10.0.0.1:514 -r 10.0.1.1:514
        --set 900 120 300
        """
    )
    conversion = convert(text, "rules.sh")
    web, syslog = services(conversion)
    assert web["persistence_timeout"] == 300  # -p without a value
    assert web["forward"] == "nat"
    assert web["reals"] == [
        {
            "address": "10.0.1.1",
            "port": 0,
            "weight": 3,
            "upper_threshold": 100,
            "lower_threshold": 50,
        },
        {"address": "10.0.1.2", "port": 8080, "weight": 1},
        {"address": "10.0.1.3", "port": 80, "weight": 0},
    ]
    assert syslog["scheduler_flags"] == ["one-packet"]
    assert syslog["reals"] == []
    assert conversion.data["ipvs"]["timeouts"] == {"tcp": 900, "tcpfin": 120, "udp": 300}
    assert [str(report) for report in conversion.reports] == [
        "rules.sh:2: -C: ipvsd never clears the IPVS table (it manages only the services of "
        "its config); the services above this line are left out, as -C removes them"
    ]


def test_what_ipvsd_cannot_express_is_reported() -> None:
    text = textwrap.dedent(
        """\
        -A -t 10.0.0.1:0 -s rr -p 360
        -a -t 10.0.0.1:0 -r 10.0.1.1:0 -g -w 1
        -A -t 10.0.0.2:80 -s rr -p 60 -M 255.0.255.0
        -A -t 10.0.0.3:80 -s rr
        -a -t 10.0.0.3:80 -r 10.0.1.1:8080 -g -w 1
        -a -t 10.0.0.3:80 -r 127.0.0.1:80 -m -w 1
        --start-daemon master --mcast-interface eth1 --syncid 5
        -Z
        """
    )
    conversion = convert(text, "r")
    assert [str(report) for report in conversion.reports] == [
        "r:1: -A: port 0 (every port of a persistent service): ipvsd services have a port; "
        "use a fwmark service for several ports: not converted",
        "r:2: -a: its service (port 0) is not converted: not converted",
        "r:3: -M: 255.0.255.0 is not leading ones then zeros: ipvsd uses /32 (per client)",
        "r:5: -a: port: forward dr cannot change the port: use 80 (or 0), or forward: nat: "
        "not converted",
        "r:6: -a: address: 127.0.0.1 is a loopback address: IPVS does not forward to loopback "
        "(the kernel drops NAT to it for traffic from the network); to serve from this "
        "director, use one of its own addresses: not converted",
        "r:7: --start-daemon: ipvsd runs the sync daemon as master or backup with a VRRP "
        "instance's state (ipvs.sync_daemon): not converted",
        "r:8: -Z: zeroes counters; nothing to convert",
    ]
    assert [svc["address"] for svc in services(conversion)] == ["10.0.0.2", "10.0.0.3"]
    assert dict((line, outcome) for line, (_, outcome) in enumerate(conversion.outcomes, 1))[5] is (
        Outcome.REPORTED
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "-A -t www.example.com:http -s rr\n",
            "'www.example.com:http' is not a numeric ADDRESS:PORT (save the rules with "
            "`ipvsadm -Sn`)",
            id="names",
        ),
        pytest.param(
            "-A -t 10.0.0.1:80 --frobnicate\n",
            "ipvsadm would refuse this line: unrecognized arguments: --frobnicate",
            id="unknown-option",
        ),
        pytest.param(
            "-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m\n",
            "-a: no such service above this line",
            id="real-before-service",
        ),
        pytest.param(
            "-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80\n",
            "-A: the service exists already (use -E)",
            id="duplicate",
        ),
        pytest.param("-A -f x\n", "-f x: not a firewall mark", id="fwmark"),
        pytest.param("-A -t 10.0.0.1:80 -b nope\n", "-b nope: not a scheduler flag", id="flag"),
    ],
)
def test_lines_ipvsadm_would_refuse_are_source_errors(text: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        convert(text, "r")
    assert caught.value.message == message
    assert str(caught.value) == f"r:{text.count(chr(10))}: {message}"


def test_cli_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(SAVED))
    assert main(["import", "ipvsadm"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.startswith(
        "# ipvsd configuration converted by `ipvsd import ipvsadm` from <stdin>\n"
    )
    assert len(yaml.safe_load(captured.out)["ipvs"]["services"]) == 6


def test_cli_reports_and_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.write_text("-A -t 10.0.0.1:80 -s rr\n-Z\n")
    out = tmp_path / "ipvsd.yaml"
    assert main(["import", "ipvsadm", str(rules), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"{rules}:2: -Z: zeroes counters; nothing to convert\n"
    assert all(REPORT_LINE.match(line) for line in captured.err.splitlines())
    assert main(["check-config", "--config", str(out)]) == 0
    out.unlink()
    assert main(["import", "ipvsadm", str(rules), "-o", str(out), "--strict"]) == 1
    assert not out.exists()
    assert capsys.readouterr().err.splitlines()[-1] == (
        "ipvsd import: 1 directive(s) reported; --strict: nothing written"
    )


def test_cli_unparseable_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.write_text("-A -t 10.0.0.1:80 -s rr\n-A -q\n")
    assert main(["import", "ipvsadm", str(rules)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"{rules}:2: ipvsadm would refuse this line: ")


def test_cli_missing_file_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "ipvsadm", "/nonexistent.rules"]) == 1
    assert (
        capsys.readouterr().err == "/nonexistent.rules:0: cannot read: No such file or directory\n"
    )
