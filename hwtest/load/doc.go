// Package load runs a front desk under load over a flapping link: the real
// encoder-cloud serve and encoder-bridge run processes, several virtual
// encoders on a private pcscd (hwtest/pcscd), and Seam's JavaScript SDK
// (conformance/load-sdk.mjs) sending encode and scan jobs, first at a
// paced rate and then as fast as the desk goes, while the link between
// bridge and cloud is cut again and again, pcscd is restarted and the
// bridge is killed. It checks that no job is lost or done twice and
// reports throughput and latency next to the same cards encoded directly.
//
// It is all in the package's test: `go test ./hwtest/load/` runs a small
// variant that checks correctness; LOAD_FULL=1 (make load) runs the full
// one and prints the numbers docs/reliability.md records.
package load
