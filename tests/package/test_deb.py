"""The Debian package: `make deb` builds it, dpkg installs it on this machine, it
runs, its unit verifies, its man pages and completion work, and a purge leaves
nothing behind.

This tier changes the machine it runs on (it installs the ipvsd package and
purges it again; a package an interrupted run left installed is purged first),
so it is not in pytest's default paths: `bash scripts/test.sh` runs it as a
step of its own. It needs root and Debian's dpkg, and it fails, never skips,
when it cannot build or install the package.
"""

from __future__ import annotations

import gzip
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipvsd import __version__

REPO = Path(__file__).resolve().parents[2]
PREFIX = Path("/usr/lib/ipvsd")
UNIT = Path("/lib/systemd/system/ipvsd.service")
CONFIG = Path("/etc/ipvsd/ipvsd.yaml")
MAN8 = Path("/usr/share/man/man8/ipvsd.8.gz")
MAN5 = Path("/usr/share/man/man5/ipvsd.yaml.5.gz")
COMPLETION = Path("/usr/share/bash-completion/completions/ipvsd")
#: Where a package can leave files, watched from before the install to after the purge
#: (dpkg's and apt's own databases aside: dpkg's record of ipvsd is checked by name).
WATCHED = ("/etc", "/usr", "/var/lib", "/opt", "/srv")
UNWATCHED = ("/var/lib/dpkg", "/var/lib/apt")


def run(*argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True)
    if check and result.returncode != 0:
        pytest.fail(
            f"{shlex.join(map(str, argv))} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    return result


def installed() -> bool:
    result = run("dpkg-query", "-W", "-f=${Status}", "ipvsd", check=False)
    return result.returncode == 0 and "installed" in result.stdout.split()


def purge() -> subprocess.CompletedProcess[str]:
    return run("dpkg", "--purge", "ipvsd")


def snapshot() -> set[str]:
    """Every path under `WATCHED`, on this file system."""
    prune = [arg for path in UNWATCHED for arg in ("-path", path, "-o")][:-1]
    argv = ["find", *WATCHED, "-xdev", "(", *prune, ")", "-prune", "-o", "-print0"]
    result = subprocess.run(argv, capture_output=True, check=False)
    return set(result.stdout.decode(errors="surrogateescape").split("\0")) - {""}


@pytest.fixture(scope="module")
def deb() -> Path:
    """The package `make deb` builds (which fails on a lintian error)."""
    problems = [
        "not root: the package test installs and purges a package" if os.geteuid() != 0 else None,
        *(f"{tool} is missing" for tool in ("dpkg", "make") if shutil.which(tool) is None),
    ]
    if any(problems):
        pytest.fail("cannot test the package: " + "; ".join(filter(None, problems)), False)
    build = subprocess.run(
        ["make", "deb"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    print(build.stdout)
    if build.returncode != 0:
        pytest.fail(f"make deb failed (exit {build.returncode}):\n{build.stdout[-5000:]}", False)
    arch = run("dpkg", "--print-architecture").stdout.strip()
    path = REPO / "dist" / f"ipvsd_{__version__}_{arch}.deb"
    assert path.is_file(), f"make deb did not make {path}"
    return path


@pytest.fixture(scope="module")
def before(deb: Path) -> Iterator[set[str]]:
    """The machine's files before the install; the package is installed meanwhile."""
    if installed():
        print("ipvsd was installed (an interrupted run?): purging it first")
        purge()
    paths = snapshot()
    run("dpkg", "-i", deb)
    yield paths
    if installed():
        purge()


def test_lintian_reports_no_error(deb: Path) -> None:
    report = (REPO / "build" / "deb" / "lintian.txt").read_text()
    errors = [line for line in report.splitlines() if line.startswith("E:")]
    assert not errors, report


def test_package_holds_what_the_design_names(deb: Path) -> None:
    listing = run("dpkg-deb", "--contents", deb).stdout
    files = {line.split()[5].removeprefix(".") for line in listing.splitlines()}
    for path in (
        "/usr/sbin/ipvsd",
        str(UNIT),
        str(CONFIG),
        "/etc/ipvsd/conf.d/",  # empty, for include fragments (issue 13)
        str(MAN8),
        str(MAN5),
        str(COMPLETION),
        "/usr/share/doc/ipvsd/copyright",
        "/usr/share/doc/ipvsd/changelog.gz",
        "/usr/share/doc/ipvsd/examples/dr.yaml",
        "/usr/share/doc/ipvsd/examples/all-active/director1.yaml",
        f"{PREFIX}/pyvenv.cfg",
    ):
        assert path in files, path
    assert not [path for path in files if "__pycache__" in path or path.endswith(".pyc")]
    assert run("dpkg-deb", "--ctrl-tarfile", deb).returncode == 0
    conffiles = run("dpkg-deb", "--info", deb, "conffiles").stdout.split()
    assert conffiles == [str(CONFIG)]
    depends = run("dpkg-deb", "--field", deb, "Depends").stdout
    assert re.match(r"python3\.\d+, ", depends), depends


def test_installed_program_runs_from_its_private_environment(before: set[str]) -> None:
    assert run("/usr/sbin/ipvsd", "--version").stdout.strip() == f"ipvsd {__version__}"
    assert run("/usr/sbin/ipvsd", "check-config", "--config", CONFIG).returncode == 0
    probe = (
        "import importlib.metadata as m, ipvsd, sys, yaml; "
        "print(ipvsd.__file__); print(yaml.__with_libyaml__); "
        "[print(d.metadata['Name'], d.version) for d in m.distributions()]"
    )
    lines = run(PREFIX / "bin" / "python3", "-I", "-c", probe).stdout.splitlines()
    assert lines[0].startswith(f"{PREFIX}/lib/python3"), lines[0]
    assert lines[1] == "True", "PyYAML without its libyaml extension"
    versions = {
        name.lower().replace("_", "-"): version
        for name, version in (line.split() for line in lines[2:])
    }
    pins = {}
    for line in (REPO / "packaging" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    assert versions == {**pins, "ipvsd": __version__}  # exactly the pins: no pip, no extras


def test_installed_unit_verifies_and_is_enabled(before: set[str]) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd", False)
    # --man=yes (the default) also checks that Documentation='s pages are installed.
    result = run("systemd-analyze", "verify", UNIT, check=False)
    assert result.returncode == 0, result.stderr
    text = UNIT.read_text()
    for line in (
        "Documentation=man:ipvsd(8) man:ipvsd.yaml(5)",
        f"ExecStart=/usr/sbin/ipvsd run --config {CONFIG}",
        f"ExecReload=/usr/sbin/ipvsd reload --config {CONFIG}",
        "StateDirectory=ipvsd",
        "RuntimeDirectory=ipvsd",
    ):
        assert line in text.splitlines(), line
    # `ipvsd run` validates the config itself; a check-config process ahead of it
    # would delay the removal of a crashed MASTER's stale VIPs by its whole start.
    assert not [line for line in text.splitlines() if line.startswith("ExecStartPre=")]
    wants = Path("/etc/systemd/system/multi-user.target.wants/ipvsd.service")
    assert wants.is_symlink()
    assert wants.resolve() == UNIT.resolve()


def test_unit_is_skipped_while_the_config_is_the_shipped_example(before: set[str]) -> None:
    (condition,) = (
        line.removeprefix("ExecCondition=")
        for line in UNIT.read_text().splitlines()
        if line.startswith("ExecCondition=")
    )
    argv = shlex.split(condition)
    skipped = run(*argv, check=False)
    assert skipped.returncode == 1  # 1..254: systemd skips the unit; it does not fail
    assert f"{CONFIG} is still the example" in skipped.stderr
    original = CONFIG.read_bytes()
    try:
        CONFIG.write_bytes(original.replace(b"node_name: director1", b"node_name: lb1"))
        assert run(*argv, check=False).returncode == 0
    finally:
        CONFIG.write_bytes(original)


@pytest.mark.parametrize(
    ("page", "name", "expected"),
    [(MAN8, "ipvsd", "ipvsd import keepalived"), (MAN5, "ipvsd.yaml", "virtual_ipaddresses")],
)
def test_man_pages_render(before: set[str], page: Path, name: str, expected: str) -> None:
    assert run("man", "-w", name).stdout.strip() == str(page)
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"}
    rendered = subprocess.run(
        ["man", "--warnings", "-l", str(page)], capture_output=True, text=True, env=env
    )
    assert rendered.returncode == 0
    assert rendered.stderr == ""  # groff's warnings
    assert expected in rendered.stdout
    groff = subprocess.run(
        ["groff", "-man", "-ww", "-z"],
        input=gzip.decompress(page.read_bytes()),
        capture_output=True,
    )
    assert groff.returncode == 0
    assert groff.stderr == b""


def test_bash_completion_is_found_and_completes(before: set[str]) -> None:
    script = (
        "source /usr/share/bash-completion/bash_completion\n"
        "_completion_loader ipvsd\n"
        "complete -p ipvsd\n"
        "COMP_WORDS=(ipvsd status --check ''); COMP_CWORD=3; COMP_LINE='ipvsd status --check '\n"
        'COMP_POINT=${#COMP_LINE}; _ipvsd; echo "${COMPREPLY[*]}"\n'
    )
    lines = run("bash", "-c", script).stdout.splitlines()
    assert lines == ["complete -F _ipvsd ipvsd", "master backup ready"]


def test_installed_daemon_runs_and_stops(before: set[str], tmp_path: Path) -> None:
    """`ipvsd run` as systemd starts it, as a pure VRRP daemon in a network namespace of its own."""
    config = tmp_path / "ipvsd.yaml"
    socket = tmp_path / "ipvsd.sock"
    config.write_text(
        f"control: {{socket: {socket}}}\nmetrics: {{listen: null}}\nstate_dir: {tmp_path}/state\n"
    )
    run("/usr/sbin/ipvsd", "check-config", "--config", config)
    log = tmp_path / "log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            ["unshare", "--net", "/usr/sbin/ipvsd", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        check = ["/usr/sbin/ipvsd", "status", "--socket", str(socket), "--check", "ready"]
        deadline = time.monotonic() + 30
        while subprocess.run(check, check=False).returncode != 0:
            assert daemon.poll() is None, (
                f"ipvsd run exited {daemon.returncode}:\n{log.read_text()}"
            )
            assert time.monotonic() < deadline, f"not ready after 30 s:\n{log.read_text()}"
            time.sleep(0.2)
        status = run("/usr/sbin/ipvsd", "status", "--socket", socket, "--json").stdout
        assert f'"version": "{__version__}"' in status
    finally:
        daemon.terminate()  # SIGTERM: the graceful stop
        assert daemon.wait(timeout=30) == 0, log.read_text()


def test_purge_leaves_nothing(before: set[str]) -> None:
    # What a running daemon would have left: its durable drains and bytecode.
    Path("/var/lib/ipvsd").mkdir(exist_ok=True)
    Path("/var/lib/ipvsd/drains.json").write_text("{}")
    run("/usr/sbin/ipvsd", "schema")
    assert list(PREFIX.rglob("__pycache__")), "postinst compiled no bytecode"
    purge()
    assert not installed()
    left = sorted(snapshot() - before)
    gone = sorted(before - snapshot())
    assert not left, "left behind by the purge:\n" + "\n".join(left)
    assert not gone, "removed though not ours:\n" + "\n".join(gone)
    for path in (PREFIX, Path("/etc/ipvsd"), Path("/var/lib/ipvsd"), UNIT, Path("/usr/sbin/ipvsd")):
        assert not path.exists(), path
        assert not path.is_symlink(), path
    assert not list(Path("/var/lib/dpkg/info").glob("ipvsd.*"))
