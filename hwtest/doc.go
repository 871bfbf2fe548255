// Package hwtest holds helpers for hardware tests: tests that go through the
// machine's real smart-card service (pcscd) with emulated cards inserted into
// vsmartcard vpcd readers (see hwtest/vpcd).
//
// Every test that touches pcscd calls Require, then AcquireSlot, then
// InsertCard. `go test ./...` runs packages in parallel and a vpcd slot holds
// one card, so slots are taken under a cross-process lock.
//
// The slots are the machine's vpcd readers (/etc/reader.conf.d), or, with
// vpcd.EnvReaderConf and PCSCLITE_CSOCK_NAME set, those of a private pcscd
// (hwtest/pcscd) that the process was pointed at before its first PC/SC
// call. No test restarts or kills the machine's pcscd: tests that do so
// run on a private pcscd (plug_test.go, hwtest/load, hwtest/fault), and
// skip where it cannot run (neither root nor user namespaces), or fail
// with CI set.
//
// Without pcscd the tests skip, unless the CI environment variable is set:
// then they fail, because CI must run them.
//
// It must not import bridge, cardfmt or reader/pcsc: their tests import it.
package hwtest
