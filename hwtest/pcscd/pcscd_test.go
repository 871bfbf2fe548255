//go:build linux

package pcscd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// daemon is the private pcscd this test process talks to: libpcsclite
// keeps the socket name of its first call, so it is started, and used,
// before any test runs.
var daemon *Daemon

func TestMain(m *testing.M) {
	d, err := New(Options{Entries: 2})
	switch {
	case errors.Is(err, ErrUnavailable) && os.Getenv("CI") == "":
		fmt.Fprintf(os.Stderr, "skipping the private pcscd's tests: %v\n", err)
	case err != nil:
		fmt.Fprintf(os.Stderr, "%v\n", err)
		os.Exit(1)
	default:
		if err := d.Use(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			d.Close()
			os.Exit(1)
		}
		daemon = d
	}
	code := m.Run()
	if d != nil {
		if err := d.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
		if _, err := os.Stat(d.Dir()); !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "Close left %s: %v\n", d.Dir(), err)
			code = 1
		}
	}
	os.Exit(code)
}

func need(t *testing.T) *Daemon {
	t.Helper()
	if daemon == nil {
		t.Skip("no private pcscd on this machine (see TestMain's message)")
	}
	return daemon
}

func TestParseVersion(t *testing.T) {
	for _, c := range []struct {
		name, out   string
		ipc, usb    string
		wantErr     bool
		description string
	}{
		{name: "debian 1.9.9", out: "pcsc-lite version 1.9.9.\nCopyright (C) ...\nEnabled features: Linux x86_64-pc-linux-gnu libsystemd serial usb libudev usbdropdir=/usr/lib/pcsc/drivers ipcdir=/run/pcscd filter configdir=/etc/reader.conf.d\n",
			ipc: "/run/pcscd", usb: "/usr/lib/pcsc/drivers"},
		{name: "no usb", out: "Enabled features: serial ipcdir=/var/run/pcscd/ configdir=/etc/reader.conf.d", ipc: "/var/run/pcscd"},
		{name: "relative ignored", out: "usbdropdir=drivers ipcdir=/run/pcscd", ipc: "/run/pcscd"},
		{name: "no ipcdir", out: "pcsc-lite version 2.0.0.\nEnabled features: usbdropdir=/usr/lib/pcsc/drivers", wantErr: true},
		{name: "root ipcdir", out: "ipcdir=/", wantErr: true},
		{name: "empty", out: "", wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ipc, usb, err := parseVersion(c.out)
			if c.wantErr {
				if !errors.Is(err, ErrVersion) {
					t.Fatalf("err = %v, want ErrVersion", err)
				}
				return
			}
			if err != nil || ipc != c.ipc || usb != c.usb {
				t.Fatalf("got %q, %q, %v; want %q, %q", ipc, usb, err, c.ipc, c.usb)
			}
		})
	}
}

func TestParseProcNetTCP(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:A029 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:8C7B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:A02A 0100007F:8C7B 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 4 1
   garbage
`
	got := parseProcNetTCP(bufio.NewScanner(strings.NewReader(table)))
	if want := []int{0xA029, 0x8C7B, 0x1F90}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v (listening only)", got, want)
	}
}

func TestOptions(t *testing.T) {
	for _, c := range []struct {
		o       Options
		entries int
		name    string
		ok      bool
	}{
		{Options{}, 1, "Test PCD", true},
		{Options{Entries: 8, Name: "Desk"}, 8, "Desk", true},
		{Options{Entries: -1}, 0, "", false},
		{Options{Entries: MaxEntries + 1}, 0, "", false},
		{Options{Name: `a "quoted" name`}, 0, "", false},
		{Options{Name: "two\nlines"}, 0, "", false},
	} {
		got, err := c.o.withDefaults()
		if !c.ok {
			if !errors.Is(err, ErrOptions) {
				t.Errorf("%+v: err = %v, want ErrOptions", c.o, err)
			}
			continue
		}
		if err != nil || got.Entries != c.entries || got.Name != c.name {
			t.Errorf("%+v: got %+v, %v", c.o, got, err)
		}
	}
}

func TestFreePorts(t *testing.T) {
	reserved := vpcd.SystemPorts()
	ports, err := freePorts(4, reserved)
	if err != nil {
		t.Fatal(err)
	}
	var all []int
	for _, p := range ports {
		all = append(all, p, p+1)
	}
	sorted := slices.Clone(all)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != 8 {
		t.Fatalf("ports overlap: %v", all)
	}
	for _, p := range all {
		if slices.Contains(reserved, p) {
			t.Errorf("port %d is the machine's vpcd's", p)
		}
		l, err := net.Listen("tcp4", ":"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d is not free after freePorts: %v", p, err)
			continue
		}
		l.Close()
	}
}

// TestConfRoundTrip: what the daemon writes is what hwtest reads back
// through vpcd.EnvReaderConf, and what pcscd names its readers.
func TestConfRoundTrip(t *testing.T) {
	dir := t.TempDir()
	es := []entry{{"Desk #1", 40001}, {"Desk #2", 40011}, {"Desk #10", 40021}}
	if err := writeConf(dir, "/opt/libifdvpcd.so", es); err != nil {
		t.Fatal(err)
	}
	t.Setenv(vpcd.EnvReaderConf, dir)
	got, err := vpcd.ConfiguredReaders()
	if err != nil {
		t.Fatal(err)
	}
	if want := readersOf(es); !slices.Equal(got, want) {
		t.Fatalf("read back %v, want %v", got, want)
	}
	if want := (vpcd.Reader{Name: "Desk #10 00 01", Addr: "127.0.0.1:40022"}); got[5] != want {
		t.Fatalf("last reader %v, want %v", got[5], want)
	}
}

func listReaders(t *testing.T) ([]string, error) {
	t.Helper()
	ctx, err := scard.EstablishContext()
	if err != nil {
		return nil, err
	}
	defer ctx.Release()
	names, err := ctx.ListReaders()
	slices.Sort(names)
	return names, err
}

func readerNames(rs []vpcd.Reader) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

// waitReaders waits until pcscd lists exactly want: after a start it
// adds the vpcd readers as it loads them.
func waitReaders(t *testing.T, want []string) {
	t.Helper()
	var got []string
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got, err = listReaders(t); err == nil && slices.Equal(got, want) {
			return
		}
	}
	t.Fatalf("the private pcscd lists %q (%v), want %q\n%s", got, err, want, daemon.Log())
}

// TestListsItsReaders: the private pcscd lists its vpcd readers and
// nothing else (no machine reader, no USB reader), and hwtest's slots are
// those readers.
func TestListsItsReaders(t *testing.T) {
	d := need(t)
	want := readerNames(d.Readers())
	if len(want) != 4 {
		t.Fatalf("2 entries give %d readers: %v", len(want), want)
	}
	waitReaders(t, want)
	var slots []vpcd.Reader
	for _, s := range hwtest.Slots() {
		slots = append(slots, vpcd.Reader{Name: s.Reader, Addr: s.Addr})
	}
	if !slices.Equal(slots, d.Readers()) {
		t.Fatalf("hwtest.Slots() = %v, want the private readers %v", slots, d.Readers())
	}
}

// TestCardThroughPrivate: a virtual card in every private slot at once
// answers through the private pcscd, each in its own reader.
func TestCardThroughPrivate(t *testing.T) {
	d := need(t)
	ctx, err := scard.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Release()
	for range d.Readers() {
		slot := hwtest.AcquireSlot(t)
		if !slices.Contains(d.Readers(), vpcd.Reader{Name: slot.Reader, Addr: slot.Addr}) {
			t.Fatalf("AcquireSlot gave %v, not a private slot", slot)
		}
		card, err := chip.New(chip.KindClassic1K, nil)
		if err != nil {
			t.Fatal(err)
		}
		hwtest.InsertCard(t, slot, card)
		c, err := ctx.Connect(slot.Reader, scard.ShareExclusive, scard.ProtocolAny)
		if err != nil {
			t.Fatalf("%v: %v", slot, err)
		}
		resp, err := c.Transmit([]byte{0xFF, 0xCA, 0x00, 0x00, 0x00}) // GET DATA: UID
		c.Disconnect(scard.LeaveCard)
		if err != nil {
			t.Fatalf("%v: %v", slot, err)
		}
		if want := append(card.UID(), 0x90, 0x00); !bytes.Equal(resp, want) {
			t.Fatalf("%v: UID answer % X, want % X", slot, resp, want)
		}
	}
}

// machinePcscd is the machine's pcscd as its pid file and socket show
// it, or "" when none runs.
func machinePcscd(t *testing.T) (pid string, socket bool) {
	t.Helper()
	raw, err := os.ReadFile(daemon.sys.ipcDir + "/pcscd.pid")
	if err != nil {
		return "", false
	}
	return strings.TrimRight(string(raw), "\n\x00 "), socketAnswers(daemon.sys.ipcDir + "/pcscd.comm")
}

// TestBesideTheMachines: starting, restarting and stopping the private
// pcscd leaves the machine's pcscd (its pid file, process and socket)
// alone, and the private pid file is the private process's.
func TestBesideTheMachines(t *testing.T) {
	d := need(t)
	pidBefore, sockBefore := machinePcscd(t)
	t.Logf("machine's pcscd: pid %q, socket answers %v", pidBefore, sockBefore)
	check := func(when string) {
		t.Helper()
		raw, err := os.ReadFile(d.PidFile())
		if err != nil {
			t.Fatalf("%s: private pid file: %v", when, err)
		}
		if got := strings.TrimRight(string(raw), "\n\x00 "); got != strconv.Itoa(d.Pid()) {
			t.Fatalf("%s: private pid file says %q, the private pcscd is %d", when, got, d.Pid())
		}
		pid, sock := machinePcscd(t)
		if pid != pidBefore || sock != sockBefore {
			t.Fatalf("%s: the machine's pcscd changed: pid %q → %q, socket %v → %v", when, pidBefore, pid, sockBefore, sock)
		}
		if pid != "" {
			n, _ := strconv.Atoi(pid)
			if n == d.Pid() {
				t.Fatalf("%s: the machine's pid file names the private pcscd", when)
			}
			// EPERM: it lives, under another user than this test.
			if err := syscall.Kill(n, 0); err != nil && !errors.Is(err, syscall.EPERM) {
				t.Fatalf("%s: the machine's pcscd (pid %d) is gone: %v", when, n, err)
			}
		}
	}
	check("running")
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	check("restarted")
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Socket()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a stopped pcscd left its socket: %v", err)
	}
	if pid, sock := machinePcscd(t); pid != pidBefore || sock != sockBefore {
		t.Fatalf("stopping the private pcscd changed the machine's: pid %q → %q", pidBefore, pid)
	}
	if _, err := listReaders(t); err == nil {
		t.Fatal("a stopped private pcscd still answers")
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	check("started again")
	waitReaders(t, readerNames(d.Readers()))
}

// TestReconfigure: stop, start with another reader.conf; the first
// entries keep their ports and names.
func TestReconfigure(t *testing.T) {
	d := need(t)
	before := d.Readers()
	if err := d.Reconfigure(3); !errors.Is(err, ErrRunning) {
		t.Fatalf("Reconfigure while running: %v, want ErrRunning", err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := d.Reconfigure(3); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	after := d.Readers()
	if len(after) != 6 || !slices.Equal(after[:4], before) {
		t.Fatalf("3 entries: %v (before %v)", after, before)
	}
	waitReaders(t, readerNames(after))
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := d.Reconfigure(2); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Readers(), before) {
		t.Fatalf("back to 2 entries: %v, want %v", d.Readers(), before)
	}
	waitReaders(t, readerNames(before))
}

// TestKilled: a SIGKILLed pcscd leaves its socket and pid file; Start
// starts over them.
func TestKilled(t *testing.T) {
	d := need(t)
	old := d.Pid()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	if d.Pid() == old || d.Pid() == 0 {
		t.Fatalf("pid %d after the restart (was %d)", d.Pid(), old)
	}
	waitReaders(t, readerNames(d.Readers()))
}
