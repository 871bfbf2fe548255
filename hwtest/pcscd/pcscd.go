package pcscd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
)

var (
	// ErrUnavailable: this machine cannot run a private pcscd (no pcscd,
	// no vpcd driver, no unshare, no right to a mount namespace). The
	// error says which.
	ErrUnavailable = errors.New("pcscd: private pcscd unavailable")
	// ErrStart: the private pcscd did not come up.
	ErrStart = errors.New("pcscd: private pcscd did not start")
	// ErrRunning: the call needs the daemon stopped.
	ErrRunning = errors.New("pcscd: private pcscd is running")
	// ErrOptions: bad Options.
	ErrOptions = errors.New("pcscd: bad options")
)

// EnvSocket is the client socket libpcsclite connects to.
const EnvSocket = "PCSCLITE_CSOCK_NAME"

// MaxEntries bounds the vpcd entries: pcsc-lite serves 16 readers.
const MaxEntries = 8

// Options configure a private pcscd.
type Options struct {
	// Entries is the number of vpcd entries, two readers each; 0 is 1.
	Entries int
	// Name prefixes each entry's FRIENDLYNAME ("Name #1", "Name #2", ...);
	// empty is "Test PCD".
	Name string
}

func (o Options) withDefaults() (Options, error) {
	if o.Entries == 0 {
		o.Entries = 1
	}
	if o.Name == "" {
		o.Name = "Test PCD"
	}
	if o.Entries < 0 || o.Entries > MaxEntries {
		return o, fmt.Errorf("%w: %d vpcd entries, want 1 to %d", ErrOptions, o.Entries, MaxEntries)
	}
	if strings.ContainsAny(o.Name, "\"\n\r\t") {
		return o, fmt.Errorf("%w: name %q: no quotes, tabs or line breaks", ErrOptions, o.Name)
	}
	return o, nil
}

// entry is one vpcd entry of the reader.conf.
type entry struct {
	name string
	port int // CHANNELID; the second slot is port+1
}

// Daemon is a private pcscd. Its methods are safe for concurrent use.
type Daemon struct {
	dir     string // bind-mounted over pcscd's ipcdir in its namespace
	confDir string
	sys     system
	name    string

	log syncbuf.Buffer

	mu      sync.Mutex
	entries []entry
	run     *run // nil while stopped
}

// Dir is the daemon's directory: socket, pid file, configuration.
func (d *Daemon) Dir() string { return d.dir }

// Socket is the client socket, for EnvSocket.
func (d *Daemon) Socket() string { return filepath.Join(d.dir, "pcscd.comm") }

// PidFile is the private pcscd's pid file.
func (d *Daemon) PidFile() string { return filepath.Join(d.dir, "pcscd.pid") }

// ConfDir is the reader.conf.d directory, for vpcd.EnvReaderConf.
func (d *Daemon) ConfDir() string { return d.confDir }

// Log is what pcscd printed (errors only, its default level).
func (d *Daemon) Log() string { return d.log.String() }

// Env is the environment that points a process at this pcscd.
func (d *Daemon) Env() []string {
	return []string{EnvSocket + "=" + d.Socket(), vpcd.EnvReaderConf + "=" + d.confDir}
}

// Use points this process at the daemon: its PC/SC calls, hwtest's slots
// and every child started afterwards. libpcsclite reads the socket name
// at its first call and keeps it, so Use must come before the process's
// first PC/SC call; a restart keeps the same socket.
func (d *Daemon) Use() error {
	for _, kv := range d.Env() {
		k, v, _ := strings.Cut(kv, "=")
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("pcscd: set %s: %w", k, err)
		}
	}
	return nil
}

// Readers are the readers of the current configuration, two per entry.
func (d *Daemon) Readers() []vpcd.Reader {
	d.mu.Lock()
	defer d.mu.Unlock()
	return readersOf(d.entries)
}

func readersOf(es []entry) []vpcd.Reader {
	var out []vpcd.Reader
	for _, e := range es {
		for i := range 2 {
			out = append(out, vpcd.Reader{
				Name: fmt.Sprintf("%s 00 %02X", e.name, i),
				Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(e.port+i)),
			})
		}
	}
	return out
}

// Pid is the running pcscd's process id, 0 when stopped.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run == nil {
		return 0
	}
	return d.run.pid()
}

// Reconfigure gives the stopped daemon a new reader.conf with n vpcd
// entries: the first ones keep their ports, added ones get free ports.
// The next Start uses it.
func (d *Daemon) Reconfigure(n int) error {
	o, err := Options{Entries: n, Name: d.name}.withDefaults()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run != nil {
		return ErrRunning
	}
	es := slices.Clone(d.entries[:min(len(d.entries), o.Entries)])
	if extra := o.Entries - len(es); extra > 0 {
		var taken []int
		for _, e := range es {
			taken = append(taken, e.port, e.port+1)
		}
		ports, err := freePorts(extra, append(taken, vpcd.SystemPorts()...))
		if err != nil {
			return err
		}
		for _, p := range ports {
			es = append(es, entry{name: entryName(d.name, len(es)+1), port: p})
		}
	}
	for i := range es {
		if err := d.driverFor(i + 1); err != nil {
			return err
		}
	}
	if err := writeConf(d.confDir, d.dir, es); err != nil {
		return err
	}
	d.entries = es
	return nil
}

func entryName(prefix string, i int) string { return fmt.Sprintf("%s #%d", prefix, i) }

// confFile is the one file of the private reader.conf.d.
const confFile = "vpcd"

// driverName is the n-th entry's copy of the vpcd driver. With two
// entries loading one file, pcscd lists all four readers but never sees
// a card in any (pcsc-lite 1.9.9, vsmartcard-vpcd 3.3): pcscd loads the
// library once and the driver's slots clash. A copy per entry is a
// library of its own.
func driverName(n int) string { return fmt.Sprintf("libifdvpcd-%d.so", n) }

// writeConf writes es as the only file of dir, each with its driver
// copy in drivers, replacing the file atomically.
func writeConf(dir, drivers string, es []entry) error {
	var b strings.Builder
	b.WriteString("# Private pcscd for tests: each entry is two vpcd readers, ports CHANNELID and CHANNELID+1.\n")
	for i, e := range es {
		fmt.Fprintf(&b, "\nFRIENDLYNAME \"%s\"\nDEVICENAME   /dev/null:%d\nLIBPATH      %s\nCHANNELID    %d\n",
			e.name, e.port, filepath.Join(drivers, driverName(i+1)), e.port)
	}
	tmp := filepath.Join(dir, "."+confFile+".tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("pcscd: reader.conf: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, confFile)); err != nil {
		return fmt.Errorf("pcscd: reader.conf: %w", err)
	}
	return nil
}

// freePorts finds n ports p, each with p+1 also free, none in reserved
// and none shared, on every interface as vpcd listens. The ports are
// released before pcscd takes them; Start retries with new ones if
// another process got there first.
func freePorts(n int, reserved []int) ([]int, error) {
	var hold []net.Listener
	defer func() {
		for _, l := range hold {
			l.Close()
		}
	}()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("pcscd: no two adjacent free ports after %d tries", tries)
		}
		l, err := net.Listen("tcp4", ":0")
		if err != nil {
			return nil, fmt.Errorf("pcscd: find a free port: %w", err)
		}
		hold = append(hold, l)
		p := l.Addr().(*net.TCPAddr).Port
		if p >= 0xFFFE || slices.Contains(reserved, p) || slices.Contains(reserved, p+1) {
			continue
		}
		l2, err := net.Listen("tcp4", ":"+strconv.Itoa(p+1))
		if err != nil {
			continue
		}
		hold = append(hold, l2)
		reserved = append(reserved, p, p+1)
		out = append(out, p)
	}
	return out, nil
}

// ForTest starts a private pcscd for t and stops it at cleanup. When the
// machine cannot run one it skips t, or fails it with CI set.
func ForTest(t testing.TB, o Options) *Daemon {
	t.Helper()
	d, err := New(o)
	if errors.Is(err, ErrUnavailable) && os.Getenv("CI") == "" {
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return d
}

// driverFor copies the vpcd driver for the n-th entry, once.
func (d *Daemon) driverFor(n int) error {
	dst := filepath.Join(d.dir, driverName(n))
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	return copyFile(dst, d.sys.driver)
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("pcscd: vpcd driver: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return fmt.Errorf("pcscd: vpcd driver: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("pcscd: vpcd driver: %w", err)
	}
	return out.Close()
}
