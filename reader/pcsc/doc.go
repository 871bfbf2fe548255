// Package pcsc implements reader.Context and reader.Card on the system's
// smart-card service through github.com/ebfe/scard: pcsc-lite's pcscd on
// Linux (cgo, libpcsclite) and winscard.dll on Windows (no cgo).
//
// A front-desk service outlives the smart-card service it talks to: it may
// start before pcscd, and Windows stops SCardSvr when the last reader is
// unplugged. Open therefore never fails for a missing service; calls report
// reader.ErrNoService until it is back, and a dead scard context is replaced
// on the next call instead of taking the bridge down.
//
// pcsc-lite serializes every call on one scard context behind a per-context
// mutex, a blocking SCardGetStatusChange included, so a shared context would
// stall Transmit for a whole poll interval behind WaitCard. Each blocking
// wait and each card connection therefore gets a context of its own; one
// shared context serves Readers.
//
// It knows readers, cards and APDUs only. It must not import bridge,
// cardfmt or any transport.
package pcsc
