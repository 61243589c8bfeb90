#!/usr/bin/env bash
# Builds the Debian package dist/ipvsd_<version>_<arch>.deb (`make deb`), then
# runs lintian on it (the build fails on an error; build/deb/lintian.txt keeps
# the report). Installs its build dependencies first, as root, on Debian 12.
#
# Where the Python code goes, and why: Debian 12's own python3 libraries are
# older than every version ipvsd needs (pyroute2 0.7.2,
# structlog 22.3, ...), so the package carries its dependencies, at the pinned
# versions of packaging/requirements.txt, in a private virtual environment at
# /usr/lib/ipvsd, dh-virtualenv style: made with Debian's own interpreter
# (/usr/bin/python3.11, so the package depends on python3.11 and nothing else
# of Python), visible to nothing but ipvsd. /usr/lib/<package> is where Debian
# puts a package's private files; /opt is for software from outside the
# distribution's packages (lintian: dir-or-file-in-opt). dh-virtualenv itself
# would need a debhelper source package for the same result; the venv is built
# here at its final path relative to a staging root, and the few places where
# a venv records its own location (the scripts' shebangs, pyvenv.cfg's
# `command`) are rewritten; the build fails if the staging path is left in any
# file. No bytecode is shipped: postinst compiles it in place (so tracebacks
# name the installed files) and prerm removes it, so a purge leaves nothing.
#
# The package, from the sources:
#   /usr/lib/ipvsd/                     the venv: ipvsd and its pinned dependencies (no pip)
#   /usr/sbin/ipvsd                     exec /usr/lib/ipvsd/bin/python3 -I -m ipvsd "$@"
#   /lib/systemd/system/ipvsd.service   systemd/ipvsd.service, as it is
#   /etc/ipvsd/ipvsd.yaml               etc/ipvsd.yaml, a conffile
#   /etc/ipvsd/conf.d/                  empty: where `include: ["conf.d/*.yaml"]` fragments go
#   /usr/share/ipvsd/ipvsd.yaml         its pristine copy: the unit's ExecCondition skips the
#                                       start while the conffile is still this example
#   /usr/share/man/man8/ipvsd.8.gz      python -m ipvsd.manpage (from the argument parser)
#   /usr/share/man/man5/ipvsd.yaml.5.gz ipvsd schema --format roff (from the config model)
#   /usr/share/bash-completion/completions/ipvsd   python -m ipvsd.manpage --completion
#   /usr/share/doc/ipvsd/               copyright, changelog.gz (packaging/changelog), examples/
# The version is ipvsd.__version__, which must match packaging/changelog's top entry.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
umask 022
# shellcheck source=scripts/setup.sh
source scripts/setup.sh

BUILD_DEPENDS=(
    dpkg-dev python3 python3-venv lintian man-db groff-base binutils
    gcc python3-dev libyaml-dev # PyYAML's C extension, built against Debian's libyaml
)
PYTHON=/usr/bin/python3
PREFIX=/usr/lib/ipvsd
WORK=$PWD/build/deb
STAGE=$WORK/root

die() { printf 'deb: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'deb: %s\n' "$*"; }

ensure_apt_packages "${BUILD_DEPENDS[@]}"
for tool in dpkg-deb dpkg-shlibdeps dpkg-parsechangelog lintian "$PYTHON"; do
    command -v "$tool" >/dev/null || die "$tool is missing: install ${BUILD_DEPENDS[*]} (as root)"
done

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' ipvsd/__init__.py)
changelog_version=$(dpkg-parsechangelog -l packaging/changelog -S Version)
[ "$version" = "$changelog_version" ] ||
    die "ipvsd/__init__.py says $version, packaging/changelog $changelog_version: add a changelog entry"
arch=$(dpkg --print-architecture)
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
interpreter=/usr/bin/python$pyver
deb=dist/ipvsd_${version}_${arch}.deb
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l packaging/changelog -S Timestamp)
export SOURCE_DATE_EPOCH
say "building $deb (python$pyver, $PREFIX)"

rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/wheel" "$STAGE" dist

# ipvsd's wheel, from a clean copy of the sources (setuptools would otherwise
# reuse whatever an earlier build left in build/lib).
cp -r pyproject.toml README.md ipvsd "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +

venv=$STAGE$PREFIX
"$interpreter" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input --quiet)
"${pip[@]}" wheel --no-deps --wheel-dir "$WORK/wheel" "$WORK/src"
# Wheels, except PyYAML: its wheels link a copy of libyaml into their C extension
# (lintian: embedded-library), so it is built here against Debian's libyaml-0-2,
# which then gets security updates with the system; with Debian's hardening flags.
(
    eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"
    export PYYAML_FORCE_LIBYAML=1 # no C extension is an error, not a slow fallback
    "${pip[@]}" install --no-compile --no-deps --no-cache-dir --only-binary=:all: \
        --no-binary=PyYAML --use-feature=no-binary-enable-wheel-cache \
        -r packaging/requirements.txt
)
"${pip[@]}" install --no-compile --no-deps "$WORK"/wheel/ipvsd-*.whl
"${pip[@]}" check || die "packaging/requirements.txt does not cover ipvsd's dependencies"
"${pip[@]}" uninstall --yes pip setuptools

# Relocate: the venv is used from $PREFIX, never from the stage. Its bin/ keeps
# only the interpreter: the console scripts (ipvsd's, pyroute2's tools) are
# dropped, /usr/sbin/ipvsd is a shell wrapper (below), and the link to
# /usr/bin/python3.X is made relative once the build has no more use for it.
find "$venv/bin" -mindepth 1 ! -name 'python*' -delete
rm -rf "$venv/include"
# Library modules are not scripts: blank their `#!/usr/bin/env python` lines
# (lintian: unusual-interpreter), keeping the line numbers of tracebacks.
find "$venv/lib" -name '*.py' -type f -exec grep -l '^#!' {} + | xargs -r sed -i '1s/^#!.*$//'
rm -f "$venv"/lib/python*/site-packages/ipvsd-*.dist-info/direct_url.json
sed -i "/direct_url.json/d" "$venv"/lib/python*/site-packages/ipvsd-*.dist-info/RECORD
sed -i "s|^command = .*|command = $interpreter -m venv $PREFIX|" "$venv/pyvenv.cfg"
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +
if grep -rlF "$STAGE" "$STAGE"; then
    die "the files above still name the staging directory $STAGE"
fi
find "$venv" -name '*.so' -type f -exec strip --strip-unneeded --remove-section=.comment \
    --remove-section=.note {} +
find "$venv" -name '*.so' -type f -exec chmod 0644 {} +

# The program, the unit, the config.
install -d "$STAGE/usr/sbin" "$STAGE/lib/systemd/system" "$STAGE/etc/ipvsd" "$STAGE/usr/share/ipvsd"
# Empty, owned by the package (dpkg removes it with the package unless an operator's
# fragment is still in it): the place the config's commented `include` names.
install -d "$STAGE/etc/ipvsd/conf.d"
# -I: no PYTHON* variables, no user site-packages, not the current directory on sys.path.
printf '#!/bin/sh\n# ipvsd, run from its private Python environment (%s).\nexec %s -I -m ipvsd "$@"\n' \
    "$PREFIX" "$PREFIX/bin/python3" >"$STAGE/usr/sbin/ipvsd"
chmod 0755 "$STAGE/usr/sbin/ipvsd"
install -m 0644 systemd/ipvsd.service "$STAGE/lib/systemd/system/ipvsd.service"
install -m 0644 etc/ipvsd.yaml "$STAGE/etc/ipvsd/ipvsd.yaml"
install -m 0644 etc/ipvsd.yaml "$STAGE/usr/share/ipvsd/ipvsd.yaml"

# Generated documentation: run from the staged venv, so it is what the package runs.
ipvsd_py=("$venv/bin/python" -I)
install -d "$STAGE/usr/share/man/man8" "$STAGE/usr/share/man/man5" \
    "$STAGE/usr/share/bash-completion/completions"
"${ipvsd_py[@]}" -m ipvsd.manpage | gzip -9n >"$STAGE/usr/share/man/man8/ipvsd.8.gz"
"${ipvsd_py[@]}" -m ipvsd schema --format roff | gzip -9n >"$STAGE/usr/share/man/man5/ipvsd.yaml.5.gz"
"${ipvsd_py[@]}" -m ipvsd.manpage --completion \
    >"$STAGE/usr/share/bash-completion/completions/ipvsd"
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +
ln -sfn "../../../bin/python$pyver" "$venv/bin/python$pyver"
doc=$STAGE/usr/share/doc/ipvsd
install -d "$doc"
install -m 0644 packaging/copyright "$doc/copyright"
gzip -9n <packaging/changelog >"$doc/changelog.gz"
cp -r examples "$doc/examples"

# Control files.
install -d "$STAGE/DEBIAN"
install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$STAGE/DEBIAN/"
echo /etc/ipvsd/ipvsd.yaml >"$STAGE/DEBIAN/conffiles"
# dpkg-shlibdeps reads debian/control of a (here imaginary) source package.
install -d "$WORK/shlibs/debian"
printf 'Source: ipvsd\n\nPackage: ipvsd\nArchitecture: any\n' >"$WORK/shlibs/debian/control"
mapfile -t objects < <(find "$venv" -type f -name '*.so' | sort)
shlibs=$(cd "$WORK/shlibs" && dpkg-shlibdeps -O -e"${objects[@]}" 2>"$WORK/shlibdeps.log") ||
    { cat "$WORK/shlibdeps.log" >&2; die "dpkg-shlibdeps failed"; }
shlibs=${shlibs#shlibs:Depends=}
depends="python$pyver, ${shlibs:+$shlibs, }init-system-helpers (>= 1.52)"
size=$(du -sk --apparent-size --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@INSTALLED_SIZE@|$size|" \
    -e "s|@DEPENDS@|$depends|" \
    -e "s|@MAINTAINER@|$(dpkg-parsechangelog -l packaging/changelog -S Maintainer)|" \
    packaging/control.in >"$STAGE/DEBIAN/control"
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)

rm -f "$deb"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1), installed size ${size} KiB)"

# lintian: errors fail the build, warnings are printed (and kept).
lintian_rc=0
lintian --fail-on error --tag-display-limit 0 "$deb" >"$WORK/lintian.txt" 2>&1 || lintian_rc=$?
sed -i '/running with root privileges is not recommended/d' "$WORK/lintian.txt"
if [ -s "$WORK/lintian.txt" ]; then
    say "lintian:"
    sed 's/^/  /' "$WORK/lintian.txt"
else
    say "lintian: no tags"
fi
[ "$lintian_rc" -eq 0 ] || die "lintian reports errors (above); $deb is not fit to install"
