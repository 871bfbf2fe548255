#!/usr/bin/env bash
# The main job on embedded defaults, without hardware: a virtual card in the
# vpcd reader of the real pcscd, a fresh site key file, then encode a
# sample credential and scan it back, for a MIFARE Classic 1K card and an
# NTAG213. Run "make demo" (it builds and sets up first).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=bin
reader="Virtual PCD 00 00"
vpcd=127.0.0.1:35963
work=$(mktemp -d "${TMPDIR:-/tmp}/encoder-bridge-demo.XXXXXX")
chmod 700 "$work"
venc_pid=
cleanup() {
	[ -n "$venc_pid" ] && kill "$venc_pid" 2>/dev/null && wait "$venc_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

say "site key file (AES-128 master keys from the system's random source)"
"$bin/encoder-bridge" keys init --out "$work/keys.json"

cat >"$work/credential.json" <<JSON
{
  "credential_id": "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5",
  "card_number": "100234",
  "card_function_type": "guest",
  "starts_at": "$(date -u +%Y-%m-%dT%H:00:00Z)",
  "ends_at": "$(date -u -d '+3 days' +%Y-%m-%dT11:00:00Z)",
  "entrance_ids": ["0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "5d6e7f80-9a0b-4c1d-8e2f-3a4b5c6d7e8f"],
  "issue_sequence": 1
}
JSON
say "credential to encode"
cat "$work/credential.json"

for card in mifare_classic_1k ntag213; do
	say "virtual $card card in \"$reader\" (vpcd $vpcd)"
	"$bin/virtual-encoder" --card "$card" --vpcd "$vpcd" &
	venc_pid=$!

	say "encoder-bridge readers"
	"$bin/encoder-bridge" readers

	say "encoder-bridge encode --reader \"$reader\" --credential credential.json"
	"$bin/encoder-bridge" encode --keys "$work/keys.json" --reader "$reader" \
		--credential "$work/credential.json" --wait 15s

	say "encoder-bridge scan --reader \"$reader\" --json"
	"$bin/encoder-bridge" scan --keys "$work/keys.json" --reader "$reader" --wait 15s --json

	kill "$venc_pid"
	wait "$venc_pid" 2>/dev/null || true
	venc_pid=
	# pcscd polls for card removal about every 400 ms.
	sleep 1
done

say "done: both cards encoded, read back and verified"
