#!/usr/bin/env bash
# Builds the Debian package from a staged tree with dpkg-deb, for this
# machine's architecture:
#
#   packaging/deb/build.sh OUTDIR [VERSION]
#
# and prints the path of the .deb. The unit is rendered by the binary it
# packages ("encoder-bridge service unit"), the same text "encoder-bridge
# service install" writes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:?usage: build.sh OUTDIR [VERSION]}
version=${2:-$(git -C "$top" describe --tags --always --dirty 2>/dev/null || echo dev)}
go=${GO:-go}

# A Debian version starts with a digit and has no "-" outside the
# revision: v1.2.0-3-gabc123 becomes 1.2.0+3+gabc123, a bare commit
# (no tag yet) 0~git3e8bcd4, which sorts before any release.
debversion=${version#v}
debversion=${debversion//-/+}
if ! [[ $debversion =~ ^[0-9]+\.[0-9] ]]; then
	debversion=0~git$debversion
fi
# Reproducible file times in the archive.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)}
arch=$(dpkg --print-architecture)

mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"

install -d -m 0755 "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/lib/systemd/system" \
	"$stage/usr/share/polkit-1/rules.d" "$stage/usr/share/doc/encoder-bridge"
install -d -m 0750 "$stage/etc/encoder-bridge"

(cd "$top" && CGO_ENABLED=1 "$go" build -trimpath -ldflags "-X main.version=$version" \
	-o "$stage/usr/bin/encoder-bridge" ./cmd/encoder-bridge)
chmod 0755 "$stage/usr/bin/encoder-bridge"

"$stage/usr/bin/encoder-bridge" service unit \
	--executable /usr/bin/encoder-bridge \
	--config /etc/encoder-bridge/encoder-bridge.yaml >"$stage/usr/lib/systemd/system/encoder-bridge.service"
chmod 0644 "$stage/usr/lib/systemd/system/encoder-bridge.service"

install -m 0644 "$here/60-encoder-bridge.rules" "$stage/usr/share/polkit-1/rules.d/60-encoder-bridge.rules"
install -m 0640 "$top/configs/encoder-bridge.yaml" "$stage/etc/encoder-bridge/encoder-bridge.yaml.example"
install -m 0644 "$top/docs/operations.md" "$stage/usr/share/doc/encoder-bridge/operations.md"

install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$stage/DEBIAN/"
echo /etc/encoder-bridge/encoder-bridge.yaml.example >"$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
# cgo links the C library of the build machine: depend on the newest
# symbol version the binary uses.
glibc=$(objdump -T "$stage/usr/bin/encoder-bridge" 2>/dev/null | grep -oE 'GLIBC_[0-9.]+' | sed 's/GLIBC_//' | sort -Vu | tail -1 || true)
libc=libc6${glibc:+ (>= $glibc)}
sed -e "s/@VERSION@/$debversion/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@LIBC@/$libc/" \
	"$here/control.in" >"$stage/DEBIAN/control"

deb="$out/encoder-bridge_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
