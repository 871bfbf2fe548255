#!/usr/bin/env bash
# Builds the Windows installer on Linux: encoder-bridge.exe for
# windows/amd64, then packaging/windows/encoder-bridge.wxs with wixl
# (Debian package wixl). Writes bin/encoder-bridge-VERSION-x64.msi, or OUT.
#
#   scripts/build-msi.sh [OUT]
#
# MSI_VERSION (a.b.c, numbers) defaults to the newest vX.Y.Z tag, else to
# 0.0.<commits>; VERSION is what the binary reports.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v wixl >/dev/null || { echo "build-msi: wixl is missing (apt-get install wixl)" >&2; exit 1; }

VERSION="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
if [ -z "${MSI_VERSION:-}" ]; then
	tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*.[0-9]*.[0-9]*' 2>/dev/null || true)
	if [ -n "$tag" ]; then
		MSI_VERSION="${tag#v}"
		MSI_VERSION="${MSI_VERSION%%-*}"
	else
		MSI_VERSION="0.0.$(git rev-list --count HEAD 2>/dev/null || echo 0)"
	fi
fi
[[ "$MSI_VERSION" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,5}$ ]] || { echo "build-msi: MSI_VERSION $MSI_VERSION is not a.b.c" >&2; exit 1; }
out="${1:-bin/encoder-bridge-$MSI_VERSION-x64.msi}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
GOOS=windows GOARCH=amd64 CGO_ENABLED=0 ${GO:-go} build -trimpath -ldflags "-X main.version=$VERSION" \
	-o "$stage/encoder-bridge.exe" ./cmd/encoder-bridge
cp configs/encoder-bridge-windows.yaml "$stage/bridge.example.yaml"
cp packaging/windows/encoder-bridge.wxs "$stage/"
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
# wixl finds the sources relative to the working directory.
(cd "$stage" && wixl -a x64 -D Version="$MSI_VERSION" -o "$out" encoder-bridge.wxs)
echo "$out"
