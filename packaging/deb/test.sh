#!/usr/bin/env bash
# Installs the Debian package on this machine, checks what it set up,
# upgrades it in place, and purges it, twice: once with the admin's own
# files in /etc/encoder-bridge, which must survive the purge with the
# account owning them, and once without, which must leave nothing.
#
#   packaging/deb/test.sh bin/encoder-bridge_VERSION_ARCH.deb
#
# Needs root (uses sudo otherwise) and dpkg. It does not need systemd to be
# running: enabling edits links, and systemd-analyze verify works offline.
set -euo pipefail

deb=${1:?usage: test.sh PACKAGE.deb}
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E "$0" "$deb"
fi

fail() {
	echo "deb test: FAIL: $*" >&2
	exit 1
}
ok() { echo "deb test: ok: $*"; }

# One package test per machine at a time: it installs system-wide.
exec 9>/run/lock/encoder-bridge-deb-test.lock
flock 9

if dpkg-query -W -f='${Status}' encoder-bridge 2>/dev/null | grep -q 'installed'; then
	fail "encoder-bridge is already installed here; the test installs and purges it (dpkg -P encoder-bridge first)"
fi
getent passwd encoder-bridge >/dev/null && fail "the account encoder-bridge exists already; the test creates and removes it"
[ -e /etc/encoder-bridge ] && fail "/etc/encoder-bridge exists already; the test checks what the package leaves there"
[ -e /var/lib/encoder-bridge ] && fail "/var/lib/encoder-bridge exists already"

cleanup() {
	dpkg -P encoder-bridge >/dev/null 2>&1 || true
	rm -rf /etc/encoder-bridge /var/lib/encoder-bridge
	getent passwd encoder-bridge >/dev/null && deluser --system --quiet encoder-bridge >/dev/null 2>&1
	getent group encoder-bridge >/dev/null && delgroup --system --quiet encoder-bridge >/dev/null 2>&1
	true
}
trap cleanup EXIT

# dpkg ARGS..., waiting while another dpkg or apt holds its lock (setup
# scripts install packages on the same machine).
dpkg() {
	local out i
	for i in $(seq 1 300); do
		if out=$(command dpkg "$@" 2>&1); then
			return 0
		fi
		case $out in
		*"dpkg frontend lock"* | *"dpkg status database is locked"*) sleep 1 ;;
		*)
			echo "$out" >&2
			return 1
			;;
		esac
	done
	echo "$out" >&2
	return 1
}

unit=/usr/lib/systemd/system/encoder-bridge.service
wants=/etc/systemd/system/multi-user.target.wants/encoder-bridge.service
rule=/usr/share/polkit-1/rules.d/60-encoder-bridge.rules

# owner DIR-OR-FILE USER GROUP MODE
owner() {
	local got
	got=$(stat -c '%U %G %a' "$1")
	[ "$got" = "$2 $3 $4" ] || fail "$1 is $got, want $2 $3 $4"
}

check_installed() {
	[ -x /usr/bin/encoder-bridge ] || fail "/usr/bin/encoder-bridge missing"
	/usr/bin/encoder-bridge version >/dev/null || fail "encoder-bridge version"
	local pw
	pw=$(getent passwd encoder-bridge) || fail "no encoder-bridge account"
	IFS=: read -r _ _ uid _ _ home shell <<<"$pw"
	[ "$uid" -lt 1000 ] || fail "encoder-bridge uid $uid is not a system uid"
	[ "$shell" = /usr/sbin/nologin ] || fail "encoder-bridge shell $shell"
	[ "$home" = /var/lib/encoder-bridge ] || fail "encoder-bridge home $home"
	owner /etc/encoder-bridge root encoder-bridge 750
	owner /etc/encoder-bridge/encoder-bridge.yaml.example root encoder-bridge 640
	owner /var/lib/encoder-bridge encoder-bridge encoder-bridge 700
	/usr/bin/encoder-bridge service unit --executable /usr/bin/encoder-bridge \
		--config /etc/encoder-bridge/encoder-bridge.yaml | cmp -s - "$unit" ||
		fail "$unit is not what \"encoder-bridge service unit\" renders"
	# deb-systemd-helper links /lib/systemd/system on bookworm: the same
	# file since /usr was merged.
	[ "$(readlink -f "$wants")" = "$(readlink -f "$unit")" ] || fail "unit not enabled: $wants -> $(readlink "$wants" || true)"
	[ -f "$rule" ] || fail "polkit rule $rule missing"
	# Enabled, never started before it is configured.
	if [ -d /run/systemd/system ]; then
		[ "$(systemctl is-active encoder-bridge.service || true)" = inactive ] || fail "the service was started"
	fi
	if pgrep -u encoder-bridge >/dev/null; then
		fail "a process runs as encoder-bridge"
	fi
}

echo "deb test: installing $deb"
dpkg -i "$deb"
check_installed
ok "installed: binary, account, /etc/encoder-bridge 0750, /var/lib/encoder-bridge 0700, unit enabled, not started"

if command -v systemd-analyze >/dev/null 2>&1; then
	# Any message, warnings included, fails: the unit ships clean.
	out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $out"
	[ -z "$out" ] || fail "systemd-analyze verify: $out"
	ok "systemd-analyze verify $unit"
else
	echo "deb test: systemd-analyze not installed; unit not verified"
fi

# The rule is JavaScript that polkitd evaluates; run it the same way.
if command -v node >/dev/null 2>&1; then
	node "$here/polkit-rule-test.js" "$rule" || fail "polkit rule"
	ok "polkit rule allows access_pcsc and access_card to encoder-bridge only"
fi

# An upgrade in place (same version, as dpkg runs it) keeps all of it.
dpkg -i "$deb"
check_installed
ok "reinstalled in place"

# The admin configures the site: these files are theirs.
cp /etc/encoder-bridge/encoder-bridge.yaml.example /etc/encoder-bridge/encoder-bridge.yaml
sed -i 's/^wait: 30s/wait: 20s/' /etc/encoder-bridge/encoder-bridge.yaml
/usr/bin/encoder-bridge keys init --out /etc/encoder-bridge/keys.json >/dev/null
chown encoder-bridge: /etc/encoder-bridge/keys.json
echo journal >/var/lib/encoder-bridge/journal.db
chown encoder-bridge: /var/lib/encoder-bridge/journal.db
/usr/bin/encoder-bridge validate --config /etc/encoder-bridge/encoder-bridge.yaml >/dev/null ||
	fail "the example configuration, with keys, does not validate"

dpkg -P encoder-bridge
left=$(cd /etc/encoder-bridge && ls -A | sort | tr '\n' ' ')
[ "$left" = "encoder-bridge.yaml keys.json " ] || fail "after purge /etc/encoder-bridge holds: $left"
getent passwd encoder-bridge >/dev/null || fail "purge removed the account that owns the admin's keys"
check_gone() {
	local p
	for p in /usr/bin/encoder-bridge "$unit" "$wants" "$rule" /var/lib/encoder-bridge \
		/var/lib/systemd/deb-systemd-helper-enabled/encoder-bridge.service.dsh-also \
		/var/lib/systemd/deb-systemd-helper-masked/encoder-bridge.service; do
		[ ! -e "$p" ] && [ ! -L "$p" ] || fail "purge left $p"
	done
	if dpkg-query -W -f='${Status}' encoder-bridge 2>/dev/null | grep -qv 'not-installed'; then
		fail "dpkg still knows encoder-bridge: $(dpkg-query -W -f='${Status}' encoder-bridge)"
	fi
}
check_gone
ok "purged with the admin's files: only encoder-bridge.yaml and keys.json left, and their account"

# Without the admin's files, purge leaves nothing at all.
rm /etc/encoder-bridge/encoder-bridge.yaml /etc/encoder-bridge/keys.json
dpkg -i "$deb"
check_installed
dpkg -P encoder-bridge
check_gone
[ ! -e /etc/encoder-bridge ] || fail "purge left /etc/encoder-bridge: $(ls -A /etc/encoder-bridge)"
getent passwd encoder-bridge >/dev/null && fail "purge left the account encoder-bridge"
getent group encoder-bridge >/dev/null && fail "purge left the group encoder-bridge"
ok "purged without the admin's files: nothing left"
