//go:build windows

package service

import (
	"fmt"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// runManaged runs p under the Service Control Manager itself rather than
// through kardianos' Run, which decides from the parent process whether
// the SCM started it and runs interactively when it guesses wrong (as
// under Wine): the service then never reports running and the SCM kills
// it (error 1053). "run --service" is only ever started by the SCM.
func runManaged(p *Program, log *zap.Logger) (bool, error) {
	if err := ensureRecovery(); err != nil {
		log.Warn("cannot set the service's recovery actions; a crash will not restart it", zap.Error(err))
	}
	if err := svc.Run(Name, &handler{p: p}); err != nil {
		return true, fmt.Errorf("service: not started by the Service Control Manager: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return true, p.err
}

// handler answers the Service Control Manager.
type handler struct{ p *Program }

func (h *handler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	if err := h.p.Start(nil); err != nil {
		h.p.log().Error("cannot start", zap.Error(err))
		return false, 1
	}
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for c := range req {
		switch c.Cmd {
		case svc.Interrogate:
			status <- c.CurrentStatus
		case svc.Stop, svc.Shutdown:
			// The SCM waits for the hint before it gives up on the stop.
			status <- svc.Status{State: svc.StopPending, WaitHint: uint32((h.p.stopTimeout() + 5*time.Second).Milliseconds())}
			if err := h.p.Stop(nil); err != nil {
				return false, 1
			}
			return false, 0
		}
	}
	return false, 0
}

// ensureRecovery sets the service's recovery: restart 10 s after a crash
// or a non-zero exit, the failure count reset after a day. "service
// install" sets it too; the MSI cannot (wixl has no failure actions), so
// the service sets it at every start. It is idempotent.
func ensureRecovery() error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(Name)
	if err != nil {
		return fmt.Errorf("open service %s: %w", Name, err)
	}
	defer s.Close()
	restart := mgr.RecoveryAction{Type: mgr.ServiceRestart, Delay: 10 * time.Second}
	if err := s.SetRecoveryActions([]mgr.RecoveryAction{restart, restart, restart}, uint32((24 * time.Hour).Seconds())); err != nil {
		return fmt.Errorf("set recovery actions: %w", err)
	}
	// Program exits 1 when the bridge fails without crashing; that must
	// count as a failure too.
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("set recovery on non-crash failures: %w", err)
	}
	return nil
}
