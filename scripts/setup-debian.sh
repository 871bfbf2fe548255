#!/usr/bin/env bash
# Installs and starts what encoder-bridge needs on Debian: the PC/SC daemon,
# its headers for the build, the vsmartcard vpcd driver that lets the
# virtual card stand in for hardware, and what the package test uses
# (adduser for the package's account, systemd for systemd-analyze, strace
# to check the unit's system call filter). Safe to run again: it installs only
# what is missing (always, when CI is set) and reuses a running pcscd.
set -euo pipefail

packages=(pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools pkg-config adduser systemd strace
	wixl msitools wine64 gcc-mingw-w64-x86-64-win32)
# Headless Chromium renders the bridge's status page in hwtest.
packages+=(chromium)
# The cloud's store tests run on PostgreSQL too: they start a throwaway
# cluster of their own from these binaries (as the package's "postgres"
# user when run as root); the cluster the package may start is not used.
packages+=(postgresql)

if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ -n "${CI:-}" ] || [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${packages[*]}"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

# Seam's JavaScript SDK drives the cloud in the conformance tests and the demo.
if ! command -v npm >/dev/null 2>&1; then
	echo "setup: installing nodejs npm"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
fi

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null 2>&1 || { echo "setup: Go 1.26 or newer is required (https://go.dev/dl/)" >&2; exit 1; }

# One pcscd per machine: reuse a running one, never kill one we did not
# start (its pid file lives in /run/pcscd).
if pgrep -x pcscd >/dev/null 2>&1; then
	echo "setup: pcscd already running"
else
	echo "setup: starting pcscd"
	"${sudo[@]}" pcscd
fi
for _ in $(seq 1 50); do
	[ -S /run/pcscd/pcscd.comm ] && break
	sleep 0.1
done
[ -S /run/pcscd/pcscd.comm ] || { echo "setup: pcscd did not open /run/pcscd/pcscd.comm" >&2; exit 1; }
