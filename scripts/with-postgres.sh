#!/bin/sh
# Runs a command beside a throwaway PostgreSQL cluster: initdb into a
# temporary directory, postgres listening only on a unix socket in that
# directory (no TCP port), stopped and removed when the command ends. The
# command finds the database in CLOUD_DB (a postgres:// URL). As root the
# cluster runs as the user postgres (Debian's package creates it):
# PostgreSQL refuses to run as root.
#
#   scripts/with-postgres.sh COMMAND [ARG...]
set -eu
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
	echo "with-postgres: no PostgreSQL binaries in /usr/lib/postgresql/*/bin: install Debian's postgresql package" >&2
	exit 1
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/encoder-bridge-pg.XXXXXX")
as=""
if [ "$(id -u)" = 0 ]; then
	chown postgres "$dir"
	as="runuser -u postgres --"
fi
stop() {
	$as "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM
$as "$bindir/initdb" -D "$dir/data" -U cloud --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 ||
	{ cat "$dir/initdb.log" >&2; exit 1; }
$as "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
	-o "-c listen_addresses= -c unix_socket_directories=$dir -c fsync=off -c max_connections=200" start >/dev/null ||
	{ cat "$dir/postgres.log" >&2; exit 1; }
CLOUD_DB="postgres://cloud@/postgres?host=$dir"
export CLOUD_DB
"$@"
