#!/bin/sh
# Runs a command holding the lock of the vpcd slot it uses, the same lock
# the Go hardware tests and virtual-encoder take (hwtest/vpcd/lock.go:
# flock on /tmp/encoder-bridge-vpcd-PORT.lock), so that a conformance run
# or the demo waits for a test using that slot instead of failing, and no
# test puts its card in the slot meanwhile. The slot is VPCD_ADDR
# (default 127.0.0.1:35963, the reader "Virtual PCD 00 00"); the wait is
# up to VPCD_LOCK_WAIT seconds (default 900). The command sees the slot
# in ENCODER_BRIDGE_VPCD_HELD: virtual-encoder, started under it, uses
# the slot without taking the lock again.
#
#   scripts/with-vpcd-slot.sh COMMAND [ARG...]
set -eu
addr=${VPCD_ADDR:-127.0.0.1:35963}
wait=${VPCD_LOCK_WAIT:-900}
port=${addr##*:}
case $port in
'' | *[!0-9]*)
	echo "with-vpcd-slot: VPCD_ADDR=$addr: want host:port" >&2
	exit 1
	;;
esac
lock=/tmp/encoder-bridge-vpcd-$port.lock
if ! command -v flock >/dev/null; then
	echo "with-vpcd-slot: flock not found: install Debian's util-linux package" >&2
	exit 1
fi
# Opened read-only, and created only when missing: O_CREAT on another
# user's file in /tmp is refused where protected_regular is on (flock(1)
# given a path would open it so).
[ -e "$lock" ] || : >"$lock"
exec 9<"$lock"
if ! flock -n 9; then
	echo "with-vpcd-slot: the vpcd slot $addr is in use (lock $lock); waiting up to ${wait}s" >&2
	flock -w "$wait" 9 || {
		echo "with-vpcd-slot: the vpcd slot $addr was not free after ${wait}s" >&2
		exit 1
	}
fi
# The shell holds the lock until the command has ended, Ctrl-C included
# (a trapped signal waits for the foreground command); the command does
# not inherit the descriptor.
trap : INT TERM
status=0
ENCODER_BRIDGE_VPCD_HELD=$addr VPCD_ADDR=$addr "$@" 9<&- || status=$?
exit $status
