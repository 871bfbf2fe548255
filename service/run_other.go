//go:build !windows

package service

import "go.uber.org/zap"

// runManaged: elsewhere kardianos' Run serves (systemd only needs the
// process to stop on SIGTERM).
func runManaged(*Program, *zap.Logger) (bool, error) { return false, nil }
