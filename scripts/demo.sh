#!/usr/bin/env bash
# The main job on embedded defaults, without hardware. It runs, on this
# machine only (loopback):
#   - encoder-cloud, the reference cloud, with its SQLite database in a
#     temporary directory;
#   - encoder-bridge run, the front-desk service, dialing the cloud's
#     websocket with a fresh bridge token and site key file;
#   - a virtual MIFARE Classic 1K card in the vpcd reader of the real pcscd;
# then, through Seam's own JavaScript SDK, creates a credential, encodes it
# onto the card, scans it back, and prints the action attempts as the SDK
# sees them. It stops everything by itself when done; Ctrl-C stops it
# early. DEMO_KEEP=1 keeps it running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

(cd conformance && npm ci --no-audit --no-fund --loglevel=error)
# The slot's lock, as the hardware tests take it, for the whole demo.
ENCODER_BRIDGE_BIN="$PWD/bin" scripts/with-vpcd-slot.sh node conformance/demo.mjs
