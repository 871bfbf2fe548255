//go:build !linux

package service

import kservice "github.com/kardianos/service"

// platformService is kardianos' service: its Windows install sets the
// recovery actions Config asks for.
func platformService(s kservice.Service, _ Options) (kservice.Service, error) { return s, nil }
