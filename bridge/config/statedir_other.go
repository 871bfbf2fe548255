//go:build !windows

package config

func defaultStateDir() string { return "/var/lib/encoder-bridge" }
