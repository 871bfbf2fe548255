//go:build linux

package pcscd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
)

const (
	// readyTimeout bounds a start: pcscd loads the drivers, vpcd opens its
	// ports, then pcscd opens its socket, well under a second when idle.
	readyTimeout = 15 * time.Second
	// stopTimeout bounds a SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	// portTries is how often Start picks new ports when another process
	// took one between the choice and vpcd's bind.
	portTries = 3
)

// errPorts: pcscd started but vpcd did not listen on every port.
var errPorts = errors.New("pcscd: vpcd did not listen on its ports")

// run is one pcscd process.
type run struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func (r *run) pid() int { return r.cmd.Process.Pid }

// New starts a private pcscd with o.Entries vpcd entries and waits until
// it serves its socket and vpcd listens on every port.
func New(o Options) (*Daemon, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	sys, err := findSystem()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "encoder-bridge-pcscd-")
	if err != nil {
		return nil, fmt.Errorf("pcscd: %w", err)
	}
	d := &Daemon{dir: dir, confDir: filepath.Join(dir, "reader.conf.d"), sys: sys, name: o.Name}
	fail := func(err error) (*Daemon, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	// Others (a bridge under another account) reach the socket through it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(fmt.Errorf("pcscd: %w", err))
	}
	if err := os.Mkdir(d.confDir, 0o755); err != nil {
		return fail(fmt.Errorf("pcscd: %w", err))
	}
	if err := d.Reconfigure(o.Entries); err != nil {
		return fail(err)
	}
	if err := d.Start(); err != nil {
		return fail(err)
	}
	return d, nil
}

// Start starts the stopped daemon with its current reader.conf and waits
// until it is ready. If vpcd cannot have a port it moves the entries to
// free ones.
func (d *Daemon) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run != nil {
		return ErrRunning
	}
	for try := 1; ; try++ {
		r, err := d.launch(readersOf(d.entries))
		if err == nil {
			d.run = r
			return nil
		}
		if !errors.Is(err, errPorts) || try == portTries {
			return err
		}
		ports, perr := freePorts(len(d.entries), vpcd.SystemPorts())
		if perr != nil {
			return perr
		}
		for i := range d.entries {
			d.entries[i].port = ports[i]
		}
		if err := writeConf(d.confDir, d.dir, d.entries); err != nil {
			return err
		}
	}
}

// launch starts pcscd in its own mount namespace and waits until it
// serves its socket and vpcd listens for every reader.
func (d *Daemon) launch(readers []vpcd.Reader) (*run, error) {
	// A killed pcscd leaves both; pcscd refuses to start over the socket.
	os.Remove(d.Socket())
	os.Remove(d.PidFile())
	cmd := exec.Command(d.sys.unshare, d.sys.unshareArgs(d.dir, d.confDir)...)
	cmd.Stdout, cmd.Stderr = &d.log, &d.log
	// The private pcscd ends with the test process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	r := &run{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(r.exited) }()

	var ports []int
	for _, rd := range readers {
		ports = append(ports, port(rd.Addr))
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-r.exited:
			return nil, fmt.Errorf("%w: it exited (%v): %s", ErrStart, cmd.ProcessState, tail(d.log.String()))
		default:
		}
		sock := socketAnswers(d.Socket())
		missing := notListening(ports)
		if sock && len(missing) == 0 {
			return r, nil
		}
		if time.Now().After(deadline) {
			stopRun(r)
			if sock {
				return nil, fmt.Errorf("%w %v: %s", errPorts, missing, tail(d.log.String()))
			}
			return nil, fmt.Errorf("%w: no socket at %s within %v: %s", ErrStart, d.Socket(), readyTimeout, tail(d.log.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tail is the end of pcscd's log, for errors.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// stopRun is SIGTERM, as a service manager stops pcscd, then SIGKILL if
// it does not exit in time; it reports whether SIGTERM was enough.
func stopRun(r *run) bool {
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
		return true
	case <-time.After(stopTimeout):
		r.cmd.Process.Kill()
		<-r.exited
		return false
	}
}

// Stop stops pcscd (SIGTERM) and waits until it has exited; every
// context and card handle on it dies, and the virtual cards' connections
// close. Stopping a stopped daemon does nothing.
func (d *Daemon) Stop() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.run
	if r == nil {
		return nil
	}
	d.run = nil
	if !stopRun(r) {
		return fmt.Errorf("pcscd: pid %d ignored SIGTERM for %v and was killed: %s", r.pid(), stopTimeout, tail(d.log.String()))
	}
	return nil
}

// Restart is Stop then Start: the same readers and socket, a new process.
func (d *Daemon) Restart() error {
	if err := d.Stop(); err != nil {
		return err
	}
	return d.Start()
}

// Close stops pcscd and removes its directory.
func (d *Daemon) Close() error {
	err := d.Stop()
	if rerr := os.RemoveAll(d.dir); rerr != nil && err == nil {
		err = fmt.Errorf("pcscd: %w", rerr)
	}
	return err
}
