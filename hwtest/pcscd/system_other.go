//go:build !linux

package pcscd

import "fmt"

// system: a private pcscd needs Linux's mount namespaces.
type system struct{ driver string }

type run struct{}

func (r *run) pid() int { return 0 }

func unavailable() error { return fmt.Errorf("%w: needs Linux mount namespaces", ErrUnavailable) }

// New fails: see system.
func New(Options) (*Daemon, error) { return nil, unavailable() }

// Start fails: see system.
func (d *Daemon) Start() error { return unavailable() }

// Stop does nothing: nothing runs.
func (d *Daemon) Stop() error { return nil }

// Restart fails: see system.
func (d *Daemon) Restart() error { return unavailable() }

// Close does nothing: nothing runs.
func (d *Daemon) Close() error { return nil }
