// Package pcscd runs a private pcscd for tests, beside the machine's: its
// own reader.conf.d with vpcd entries on free ports, its own client socket
// and pid file, stopped and started again on demand (with another
// reader.conf if asked) without touching the machine's pcscd.
//
// pcscd keeps its pid file and socket under a fixed directory
// (/run/pcscd; pcscd -v prints it as ipcdir) and refuses to start while
// the pid in that pid file lives. pcsc-lite 1.9.9 (Debian bookworm)
// ignores PCSCLITE_CSOCK_NAME in the daemon: only libpcsclite, the client
// side, reads it. So the private pcscd runs in its own mount namespace
// (unshare(1); as root, or in a user namespace otherwise) where the
// daemon's directory under test is bind-mounted over /run/pcscd: its pid
// file and socket land there, and clients outside reach the socket through
// PCSCLITE_CSOCK_NAME. In that namespace an empty tmpfs also covers the
// USB driver directory (pcscd -v: usbdropdir), so the private pcscd never
// claims a real reader; each vpcd entry loads its own copy of the vpcd
// driver from the daemon's directory (see driverName). The network is shared: vpcd listens on its ports on every
// interface, as the machine's does.
//
// Each vpcd entry gives two readers, "FRIENDLYNAME 00 00" on port
// CHANNELID and "FRIENDLYNAME 00 01" on CHANNELID+1 (pcsc-lite names a
// reader "FRIENDLYNAME %02X %02X"); every entry gets its own name, so the
// names do not depend on the order pcscd loads them in.
//
// A process points its PC/SC calls, the hardware test helpers (hwtest,
// through vpcd.EnvReaderConf) and its children (encoder-bridge) at the
// private pcscd through the environment: Daemon.Env for a child,
// Daemon.Use for the process itself, before its first PC/SC call, since
// libpcsclite reads the socket name once.
//
// The slots are ports no other process uses, and they are locked like the
// machine's (vpcd.LockSlot, keyed by port), so hwtest.AcquireSlot works
// unchanged.
//
// It must not import bridge, cardfmt or reader/pcsc, like hwtest.
package pcscd
