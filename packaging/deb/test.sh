#!/usr/bin/env bash
# Installs the Debian package on this machine, checks what it set up,
# upgrades it in place, and purges it, twice: once with the admin's own
# files in /etc/encoder-bridge, which must survive the purge with the
# account owning them, and once without, which must leave nothing. Then
# "encoder-bridge service install" and "uninstall" without the package.
#
#   packaging/deb/test.sh bin/encoder-bridge_VERSION_ARCH.deb [bin/encoder-cloud]
#
# Given encoder-cloud, it also runs the installed bridge as the service
# would, as the encoder-bridge account with the admin's files, against that
# cloud on loopback and the running pcscd, under strace, and checks every
# system call it made is one the unit's SystemCallFilter=@system-service
# allows, and every socket one RestrictAddressFamilies= allows.
#
# Needs root (uses sudo otherwise) and dpkg. It does not need systemd to be
# running: enabling edits links, and systemd-analyze verify works offline.
set -euo pipefail

abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
deb=$(abs "${1:?usage: test.sh PACKAGE.deb [encoder-cloud]}")
cloud_bin=${2:+$(abs "$2")}
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" -ne 0 ]; then
	exec sudo -E "$0" "$deb" ${cloud_bin:+"$cloud_bin"}
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

work=$(mktemp -d)
cloud_pid=
cleanup() {
	if [ -n "$cloud_pid" ]; then
		kill "$cloud_pid" 2>/dev/null || true
		wait "$cloud_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
	dpkg -P encoder-bridge >/dev/null 2>&1 || true
	rm -rf /etc/encoder-bridge /var/lib/encoder-bridge /var/log/encoder-bridge
	rm -f /etc/systemd/system/encoder-bridge.service /etc/systemd/system/multi-user.target.wants/encoder-bridge.service
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
	[ ! -e /etc/systemd/system/encoder-bridge.service ] && [ ! -L /etc/systemd/system/encoder-bridge.service ] ||
		fail "the unit is masked or overridden: $(ls -l /etc/systemd/system/encoder-bridge.service)"
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

# Remove (not purge) keeps the configuration, the journal and the account;
# installing again brings the unit back enabled.
dpkg -r encoder-bridge
[ ! -e /usr/bin/encoder-bridge ] || fail "remove left the binary"
[ -f /etc/encoder-bridge/encoder-bridge.yaml.example ] || fail "remove deleted the example configuration"
[ -d /var/lib/encoder-bridge ] || fail "remove deleted the journal's directory"
getent passwd encoder-bridge >/dev/null || fail "remove deleted the account"
dpkg -i "$deb"
check_installed
ok "removed and installed again: configuration, journal and account kept, unit enabled again"

# The admin configures the site: these files are theirs.
# As docs/operations.md says: the service reads it through the group.
install -m 0640 -g encoder-bridge /etc/encoder-bridge/encoder-bridge.yaml.example /etc/encoder-bridge/encoder-bridge.yaml
sed -i 's/^wait: 30s/wait: 20s/' /etc/encoder-bridge/encoder-bridge.yaml
/usr/bin/encoder-bridge keys init --out /etc/encoder-bridge/keys.json >/dev/null
chown encoder-bridge: /etc/encoder-bridge/keys.json
/usr/bin/encoder-bridge validate --config /etc/encoder-bridge/encoder-bridge.yaml >/dev/null ||
	fail "the example configuration, with keys, does not validate"

# get URL: the HTTP status of a GET on loopback, with bash alone.
get() {
	local hostport=${1#http://} path
	path=/${hostport#*/}
	hostport=${hostport%%/*}
	exec 8<>"/dev/tcp/${hostport%:*}/${hostport#*:}" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&8
	local status
	read -r _ status _ <&8 || true
	exec 8<&-
	echo "$status"
}

if [ -n "$cloud_bin" ] && command -v strace >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1; then
	# The service as systemd would run it: its account, its files, the
	# journal in /var/lib/encoder-bridge, pcscd through its socket.
	port=$(( (RANDOM % 2000) + 41000 ))
	health=$((port + 1))
	"$cloud_bin" init --db "$work/cloud.db" --out "$work/boot.json" --endpoint "http://127.0.0.1:$port" >/dev/null
	"$cloud_bin" serve --db "$work/cloud.db" --listen "127.0.0.1:$port" >"$work/cloud.log" 2>&1 &
	cloud_pid=$!
	field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$work/boot.json"; }
	(umask 077 && field bridge_token >/etc/encoder-bridge/bridge.token)
	chown encoder-bridge: /etc/encoder-bridge/bridge.token
	sed -i -e "s|^  url: .*|  url: ws://127.0.0.1:$port|" \
		-e "s|^  bridge_id: .*|  bridge_id: $(field bridge_id)|" \
		-e "s|^# health:|health:|" -e "s|^#   listen: .*|  listen: 127.0.0.1:$health|" \
		-e '/^encoders:/,$d' /etc/encoder-bridge/encoder-bridge.yaml
	/usr/bin/encoder-bridge validate --config /etc/encoder-bridge/encoder-bridge.yaml >/dev/null ||
		fail "the site configuration does not validate"
	strace -f -qq -u encoder-bridge -o "$work/trace" \
		/usr/bin/encoder-bridge run --config /etc/encoder-bridge/encoder-bridge.yaml >"$work/bridge.log" 2>&1 &
	strace_pid=$!
	ready=
	for _ in $(seq 1 200); do
		if [ "$(get "http://127.0.0.1:$health/readyz" 2>/dev/null)" = 200 ]; then
			ready=1
			break
		fi
		kill -0 "$strace_pid" 2>/dev/null || break
		sleep 0.1
	done
	bridge_pid=$(pgrep -P "$strace_pid" || true)
	[ -n "$bridge_pid" ] && kill -TERM "$bridge_pid"
	wait "$strace_pid" || fail "the bridge exited with an error: $(cat "$work/bridge.log")"
	[ -n "$ready" ] || fail "the bridge did not become ready (linked, with an encoder): $(cat "$work/bridge.log")"
	owner /var/lib/encoder-bridge/journal.db encoder-bridge encoder-bridge 600
	systemd-analyze syscall-filter >"$work/groups" 2>/dev/null
	refused=$(awk -f "$here/syscalls.awk" "$work/groups" "$work/trace" | sort | tr '\n' ' ')
	[ -z "$refused" ] || fail "the bridge made system calls SystemCallFilter=@system-service refuses: $refused"
	if grep -E '(mmap|mprotect)\(.*PROT_WRITE\|PROT_EXEC' "$work/trace" >"$work/wx"; then
		fail "the bridge mapped memory writable and executable, which MemoryDenyWriteExecute= refuses: $(head -1 "$work/wx")"
	fi
	families=$(grep -oE 'socket\(AF_[A-Z0-9]+' "$work/trace" | sort -u | sed 's/socket(//' | tr '\n' ' ')
	for f in $families; do
		case $f in
		AF_UNIX | AF_INET | AF_INET6) ;;
		*) fail "the bridge opened an $f socket, which RestrictAddressFamilies= refuses" ;;
		esac
	done
	ok "ran as encoder-bridge with the admin's files: ready, journal written, $(grep -oE '^[0-9]+ +[a-z_0-9]+\(' "$work/trace" | awk '{print $2}' | sort -u | wc -l) distinct system calls all in @system-service, sockets: $families"
	kill "$cloud_pid"
	wait "$cloud_pid" 2>/dev/null || true
	cloud_pid=
else
	echo "deb test: no encoder-cloud, strace or systemd-analyze; the bridge was not run as the service"
	install -o encoder-bridge -g encoder-bridge -m 0600 /dev/null /var/lib/encoder-bridge/journal.db
fi
# A log file as log.file.path and the unit's LogsDirectory= would leave;
# purge removes it with the journal.
install -d -o encoder-bridge -g encoder-bridge -m 0750 /var/log/encoder-bridge
install -o encoder-bridge -g encoder-bridge -m 0640 /dev/null /var/log/encoder-bridge/encoder-bridge.log

dpkg -P encoder-bridge
left=$(cd /etc/encoder-bridge && ls -A | sort | tr '\n' ' ')
want="encoder-bridge.yaml keys.json "
[ -e /etc/encoder-bridge/bridge.token ] && want="bridge.token $want"
[ "$left" = "$want" ] || fail "after purge /etc/encoder-bridge holds: $left"
getent passwd encoder-bridge >/dev/null || fail "purge removed the account that owns the admin's keys"
check_gone() {
	local p
	for p in /usr/bin/encoder-bridge "$unit" "$wants" "$rule" /var/lib/encoder-bridge /var/log/encoder-bridge \
		/var/lib/systemd/deb-systemd-helper-enabled/encoder-bridge.service.dsh-also \
		/var/lib/systemd/deb-systemd-helper-masked/encoder-bridge.service; do
		[ ! -e "$p" ] && [ ! -L "$p" ] || fail "purge left $p"
	done
	if dpkg-query -W -f='${Status}' encoder-bridge 2>/dev/null | grep -qv 'not-installed'; then
		fail "dpkg still knows encoder-bridge: $(dpkg-query -W -f='${Status}' encoder-bridge)"
	fi
}
check_gone
ok "purged with the admin's files: only ${left}left, and their account"

# Without the admin's files, purge leaves nothing at all.
rm -f /etc/encoder-bridge/encoder-bridge.yaml /etc/encoder-bridge/keys.json /etc/encoder-bridge/bridge.token
dpkg -i "$deb"
check_installed
dpkg -P encoder-bridge
check_gone
[ ! -e /etc/encoder-bridge ] || fail "purge left /etc/encoder-bridge: $(ls -A /etc/encoder-bridge)"
getent passwd encoder-bridge >/dev/null && fail "purge left the account encoder-bridge"
getent group encoder-bridge >/dev/null && fail "purge left the group encoder-bridge"
ok "purged without the admin's files: nothing left"

# "encoder-bridge service install" without the package: the same unit in
# /etc/systemd/system, the account created, enabled and not started.
dpkg-deb -x "$deb" "$work/x"
exe=$work/x/usr/bin/encoder-bridge
cat >"$work/site.yaml" <<EOF
version: 1
cloud:
  url: wss://cloud.example.com
  bridge_id: 31ab596f-1559-4ebe-82d8-fdea458bf8d0
  token_file: /etc/encoder-bridge/bridge.token
EOF
"$exe" service install --config "$work/site.yaml" >/dev/null || fail "service install"
etc_unit=/etc/systemd/system/encoder-bridge.service
"$exe" service unit --config "$work/site.yaml" | cmp -s - "$etc_unit" ||
	fail "service install wrote another unit than \"service unit\" prints"
[ "$(readlink -f "$wants")" = "$etc_unit" ] || fail "service install did not enable the unit"
getent passwd encoder-bridge >/dev/null || fail "service install did not create the account"
owner /etc/encoder-bridge root encoder-bridge 750
if command -v systemd-analyze >/dev/null 2>&1; then
	out=$(systemd-analyze verify "$etc_unit" 2>&1) || fail "systemd-analyze verify: $out"
	[ -z "$out" ] || fail "systemd-analyze verify: $out"
fi
if pgrep -u encoder-bridge >/dev/null; then
	fail "service install started the service"
fi
"$exe" service uninstall >/dev/null || fail "service uninstall"
[ ! -e "$etc_unit" ] && [ ! -L "$wants" ] || fail "service uninstall left the unit or its link"
ok "service install wrote the same unit to /etc/systemd/system, created the account, enabled it, did not start it; uninstall removed it"
