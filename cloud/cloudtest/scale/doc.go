// Package scale measures the cloud at the scale of a hotel chain, with
// every part a process of its own: encoder-cloud serve instances, and
// fakebridges processes (package cloud/cloudtest/fleet) holding the
// simulated bridges' links, so that neither end's open files limit the
// other. It builds both binaries, registers the bridges in bulk, starts
// and stops the processes (none outlives the test: a fleet ends with its
// stdin, every child gets SIGKILL if the test process dies) and samples
// each instance's resident memory and CPU time from /proc and its Go heap
// from its /metrics.
//
// The benchmarks in this package (scale_test.go) use it; docs/benchmarks.md
// gives their commands and results. It runs on Linux only. It is a test
// tool: nothing shipped imports it.
package scale
