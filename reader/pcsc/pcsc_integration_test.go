//go:build linux

package pcsc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// The vsmartcard vpcd driver's second slot (PCSC-TESTING.md). Its lock is
// shared with hwtest, so test packages running in parallel take turns on
// the slot.
const (
	vpcdReader = "Virtual PCD 00 01"
	vpcdAddr   = "127.0.0.1:35964"
)

var (
	// MIFARE Classic 1K behind a PC/SC Part 3 reader.
	vcardATR   = []byte{0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x03, 0x06, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x6A}
	getUID     = []byte{0xFF, 0xCA, 0x00, 0x00, 0x00}
	uidRsp     = []byte{0x01, 0x02, 0x03, 0x04, 0x90, 0x00}
	readBinary = []byte{0xFF, 0xB0, 0x00, 0x04, 0x10}
)

// requirePCSC skips without pcscd and the vpcd slot, except in CI, where
// the hardware tests must run.
func requirePCSC(t *testing.T) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	names, err := vpcdListed()
	if err != nil || !slices.Contains(names, vpcdReader) {
		fail("pcscd with the %q reader (vsmartcard-vpcd) not reachable: %q, %v", vpcdReader, names, err)
	}
}

func vpcdListed() ([]string, error) {
	sc, err := scard.EstablishContext()
	if err != nil {
		return nil, err
	}
	defer sc.Release()
	return sc.ListReaders()
}

// lockSlot holds the slot's lock (the one hwtest and virtual-encoder
// take) until the test ends.
func lockSlot(t *testing.T) {
	t.Helper()
	unlock, err := vpcd.LockSlot(vpcdAddr)
	if errors.Is(err, vpcd.ErrSlotBusy) {
		t.Logf("waiting for the vpcd slot %s, held by another test or process", vpcdAddr)
		unlock, err = vpcd.WaitSlot(t.Context(), vpcdAddr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
}

// vcard is a virtual card on vpcd: connected is inserted, closed is
// removed.
type vcard struct {
	conn *net.TCPConn
	done chan struct{}

	mu   sync.Mutex
	ctrl []byte // control codes vpcd sent
}

func dialCard(t *testing.T) *vcard {
	t.Helper()
	conn, err := net.Dial("tcp", vpcdAddr)
	if err != nil {
		t.Fatal(err)
	}
	v := &vcard{conn: conn.(*net.TCPConn), done: make(chan struct{})}
	go v.serve()
	return v
}

// quickAck defeats the 40 ms delayed-ACK stall: vpcd writes the length
// and the body separately (PCSC-TESTING.md).
func (v *vcard) quickAck() {
	rc, err := v.conn.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

func (v *vcard) serve() {
	defer close(v.done)
	defer v.conn.Close()
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(v.conn, hdr[:]); err != nil {
			return
		}
		v.quickAck()
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(v.conn, msg); err != nil {
			return
		}
		v.quickAck()

		var rsp []byte
		switch {
		case len(msg) == 1:
			v.mu.Lock()
			v.ctrl = append(v.ctrl, msg[0])
			v.mu.Unlock()
			if msg[0] != 0x04 { // power off, power on, reset: no answer
				continue
			}
			rsp = vcardATR
		case bytes.Equal(msg, getUID):
			rsp = uidRsp
		case bytes.Equal(msg, readBinary):
			// The card leaves the field in the middle of this command.
			return
		default:
			rsp = []byte{0x6D, 0x00}
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(rsp)))
		if _, err := v.conn.Write(append(out, rsp...)); err != nil {
			return
		}
	}
}

func (v *vcard) remove() {
	_ = v.conn.Close()
	<-v.done
}

func (v *vcard) controls() []byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.ctrl)
}

// waitCard is WaitCard bounded by the generous test bound.
func waitCard(t *testing.T, c *Context, present bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := c.WaitCard(ctx, vpcdReader, present); err != nil {
		t.Fatalf("WaitCard(present=%v): %v", present, err)
	}
}

// insertCard puts a virtual card on the slot and waits until pcscd sees
// it; the cleanup removes it and waits until pcscd sees that too, so the
// next test starts with an empty slot.
func insertCard(t *testing.T, c *Context) *vcard {
	t.Helper()
	v := dialCard(t)
	t.Cleanup(func() {
		v.remove()
		waitCard(t, c, false)
	})
	waitCard(t, c, true)
	return v
}

func connectCard(t *testing.T, c *Context) reader.Card {
	t.Helper()
	card, err := c.Connect(t.Context(), vpcdReader)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = card.Close() })
	return card
}

func TestIntegration(t *testing.T) {
	requirePCSC(t)
	lockSlot(t)

	c, err := Open(Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	waitCard(t, c, false)

	t.Run("Readers", func(t *testing.T) {
		names, err := c.Readers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Virtual PCD 00 00", vpcdReader} {
			if !slices.Contains(names, want) {
				t.Errorf("Readers = %q, missing %q", names, want)
			}
		}
		if slices.Contains(names, pnpReader) {
			t.Errorf("Readers lists the PnP pseudo reader: %q", names)
		}
	})

	t.Run("WaitReadersChange", func(t *testing.T) {
		names, err := c.Readers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.WaitReadersChange(t.Context(), []string{vpcdReader})
		if err != nil || !sameReaders(got, names) {
			t.Fatalf("WaitReadersChange(one reader known) = %q, %v; want %q", got, err, names)
		}
		// Nothing changes here: it waits on PnP until the deadline.
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		defer cancel()
		slices.Reverse(names)
		if got, err := c.WaitReadersChange(ctx, names); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitReadersChange(all known) = %q, %v; want DeadlineExceeded", got, err)
		}
	})

	t.Run("SerialNumber", func(t *testing.T) {
		// vpcd's driver reports no serial number; the encoder's identity
		// then comes from reader.StableName.
		if s, err := c.SerialNumber(t.Context(), vpcdReader); !errors.Is(err, reader.ErrNoSerial) {
			t.Errorf("SerialNumber(%q) = %q, %v; want ErrNoSerial", vpcdReader, s, err)
		}
		if _, err := c.SerialNumber(t.Context(), "No Such Reader 99"); !errors.Is(err, reader.ErrUnknownReader) {
			t.Errorf("SerialNumber of an unknown reader: %v, want ErrUnknownReader", err)
		}
	})

	t.Run("NoCard", func(t *testing.T) {
		if _, err := c.Connect(t.Context(), vpcdReader); !errors.Is(err, reader.ErrNoCard) {
			t.Errorf("Connect on an empty slot: %v, want ErrNoCard", err)
		}
		err := c.WaitCard(t.Context(), "No Such Reader 99", true)
		if !errors.Is(err, reader.ErrUnknownReader) {
			t.Errorf("WaitCard on an unknown reader: %v, want ErrUnknownReader", err)
		}
		if _, err := c.Connect(t.Context(), "No Such Reader 99"); !errors.Is(err, reader.ErrUnknownReader) {
			t.Errorf("Connect to an unknown reader: %v, want ErrUnknownReader", err)
		}
	})

	t.Run("WaitCard", func(t *testing.T) {
		present := async(func() error {
			ctx, cancel := context.WithTimeout(t.Context(), bound)
			defer cancel()
			return c.WaitCard(ctx, vpcdReader, true)
		})
		v := dialCard(t)
		if err := await(t, present); err != nil {
			v.remove()
			t.Fatalf("WaitCard(present) across insertion: %v", err)
		}
		absent := async(func() error {
			ctx, cancel := context.WithTimeout(t.Context(), bound)
			defer cancel()
			return c.WaitCard(ctx, vpcdReader, false)
		})
		v.remove()
		if err := await(t, absent); err != nil {
			t.Fatalf("WaitCard(absent) across removal: %v", err)
		}
	})

	t.Run("ConnectTransmit", func(t *testing.T) {
		insertCard(t, c)
		card := connectCard(t, c)
		if card.Reader() != vpcdReader {
			t.Errorf("Reader() = %q", card.Reader())
		}
		if !bytes.Equal(card.ATR(), vcardATR) {
			t.Errorf("ATR = % X, want % X", card.ATR(), vcardATR)
		}
		rsp, err := card.Transmit(t.Context(), getUID)
		if err != nil || !bytes.Equal(rsp, uidRsp) {
			t.Fatalf("Transmit = % X, %v", rsp, err)
		}
		if _, err := c.Connect(t.Context(), vpcdReader); !errors.Is(err, reader.ErrSharingViolation) {
			t.Errorf("second exclusive Connect: %v, want ErrSharingViolation", err)
		}

		// A wait on the same reader must not hold up the card's APDUs:
		// pcsc-lite holds a context's lock for a whole GetStatusChange, so
		// on a shared context each of these would take a poll interval.
		ctx, cancel := context.WithCancel(t.Context())
		waiting := async(func() error { return c.WaitCard(ctx, vpcdReader, false) })
		start := time.Now()
		for range 100 {
			if _, err := card.Transmit(t.Context(), getUID); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d > bound {
			t.Errorf("100 APDUs beside a WaitCard took %v", d)
		}
		cancel()
		if err := await(t, waiting); !errors.Is(err, context.Canceled) {
			t.Errorf("WaitCard(absent) with the card present: %v, want context.Canceled", err)
		}
	})

	t.Run("Reset", func(t *testing.T) {
		v := insertCard(t, c)
		card := connectCard(t, c)
		before := len(v.controls())
		if err := card.Reset(t.Context()); err != nil {
			t.Fatal(err)
		}
		// vpcd passes the reset on to the card as control code 0x02.
		if got := v.controls()[before:]; !slices.Contains(got, 0x02) {
			t.Errorf("control codes after Reset: % X, want a reset (02)", got)
		}
		if !bytes.Equal(card.ATR(), vcardATR) {
			t.Errorf("ATR after Reset = % X", card.ATR())
		}
		if rsp, err := card.Transmit(t.Context(), getUID); err != nil || !bytes.Equal(rsp, uidRsp) {
			t.Fatalf("Transmit after Reset = % X, %v", rsp, err)
		}
	})

	t.Run("RemovedMidSession", func(t *testing.T) {
		v := insertCard(t, c)
		card := connectCard(t, c)
		if _, err := card.Transmit(t.Context(), getUID); err != nil {
			t.Fatal(err)
		}
		v.remove()
		// pcscd answers NOT_TRANSACTED until its presence poll (~400 ms)
		// notices, then REMOVED_CARD; both are ErrCardRemoved. Should a
		// transmit still get through, wait for pcscd's view of the slot
		// rather than sleep.
		var err error
		for range 10 {
			if _, err = card.Transmit(t.Context(), getUID); errors.Is(err, reader.ErrCardRemoved) {
				break
			}
			if err != nil {
				t.Fatalf("Transmit after removal: %v, want ErrCardRemoved", err)
			}
			waitCard(t, c, false)
		}
		if !errors.Is(err, reader.ErrCardRemoved) {
			t.Fatalf("Transmit after removal: %v, want ErrCardRemoved", err)
		}
		if err := card.Reset(t.Context()); !errors.Is(err, reader.ErrCardRemoved) {
			t.Errorf("Reset after removal: %v, want ErrCardRemoved", err)
		}
		if err := card.Close(); err != nil {
			t.Errorf("Close after removal: %v", err)
		}
	})

	t.Run("RemovedMidTransmit", func(t *testing.T) {
		insertCard(t, c)
		card := connectCard(t, c)
		// The card vanishes without answering: pcscd reports success with
		// an empty response, which must not pass for one.
		rsp, err := card.Transmit(t.Context(), readBinary)
		if !errors.Is(err, reader.ErrCardRemoved) {
			t.Fatalf("Transmit interrupted by removal = % X, %v; want ErrCardRemoved", rsp, err)
		}
		if _, err := card.Transmit(t.Context(), getUID); !errors.Is(err, reader.ErrCardRemoved) {
			t.Errorf("next Transmit: %v, want ErrCardRemoved", err)
		}
	})

	t.Run("WaitCardCancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		waiting := async(func() error { return c.WaitCard(ctx, vpcdReader, true) })
		time.AfterFunc(100*time.Millisecond, cancel)
		if err := await(t, waiting); !errors.Is(err, context.Canceled) {
			t.Errorf("WaitCard after cancel: %v, want context.Canceled", err)
		}

		ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		if err := c.WaitCard(ctx, vpcdReader, true); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitCard past its deadline: %v, want DeadlineExceeded", err)
		}
	})

	t.Run("CloseUnblocksWaiters", func(t *testing.T) {
		c2, err := Open(Options{Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		blocks := watchBlocked(c2)
		names, err := c2.Readers(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		insertCard(t, c)
		card, err := c2.Connect(t.Context(), vpcdReader)
		if err != nil {
			t.Fatal(err)
		}
		n := blocks.count()
		waits := []<-chan error{
			async(func() error { return c2.WaitCard(t.Context(), vpcdReader, false) }),
			async(func() error { _, err := c2.WaitReadersChange(t.Context(), names); return err }),
		}
		// Close while both block in GetStatusChange (or are about to).
		blocks.await(t, n+2*perWait)
		if err := c2.Close(); err != nil {
			t.Fatal(err)
		}
		for _, ch := range waits {
			if err := await(t, ch); !errors.Is(err, reader.ErrClosed) {
				t.Errorf("wait after Close: %v, want ErrClosed", err)
			}
		}
		if _, err := card.Transmit(t.Context(), getUID); !errors.Is(err, reader.ErrClosed) {
			t.Errorf("Transmit after Close: %v, want ErrClosed", err)
		}
		// Close left the card powered and free for the next connection.
		card2 := connectCard(t, c)
		if _, err := card2.Transmit(t.Context(), getUID); err != nil {
			t.Errorf("Transmit on a new connection: %v", err)
		}
	})
}

// daemonProxy stands between libpcsclite and the real pcscd, so a test can
// make pcscd look stopped, restarted or started without touching the
// machine's one pcscd: libpcsclite finds the daemon through
// PCSCLITE_CSOCK_NAME, read once per process.
type daemonProxy struct {
	path, target string

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
	accepted int
	wg       sync.WaitGroup
}

// start makes the daemon reachable.
func (p *daemonProxy) start(t *testing.T) {
	t.Helper()
	_ = os.Remove(p.path)
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	if p.conns == nil {
		p.conns = map[net.Conn]struct{}{}
	}
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			daemon, err := net.Dial("unix", p.target)
			if err != nil {
				_ = client.Close()
				continue
			}
			p.mu.Lock()
			p.conns[client], p.conns[daemon] = struct{}{}, struct{}{}
			p.accepted++
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			go pipe(client, daemon)
			go pipe(daemon, client)
		}
	})
}

// restart drops every connection, as a dying pcscd does; new ones go
// through to the same daemon, as to a restarted one.
func (p *daemonProxy) restart() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// stop makes the daemon unreachable: no socket file, no connections.
func (p *daemonProxy) stop() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close() // removes the socket file
	}
	p.wg.Wait()
	p.restart()
}

const (
	restartChildEnv = "ENCODER_BRIDGE_PCSC_RESTART_CHILD"
	pcscdSocketEnv  = "ENCODER_BRIDGE_PCSCD_SOCKET"
)

// TestServiceRestart runs the real libpcsclite through pcscd outages: the
// service down at Open, a restart while idle, a restart under a wait and a
// card connection, and a stop and start. It runs in a child process,
// because libpcsclite reads PCSCLITE_CSOCK_NAME only once.
func TestServiceRestart(t *testing.T) {
	if os.Getenv(restartChildEnv) == "" {
		requirePCSC(t)
		lockSlot(t)
		real := os.Getenv("PCSCLITE_CSOCK_NAME")
		if real == "" {
			real = "/run/pcscd/pcscd.comm"
		}
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestServiceRestart$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(),
			restartChildEnv+"=1",
			pcscdSocketEnv+"="+real,
			"PCSCLITE_CSOCK_NAME="+filepath.Join(t.TempDir(), "pcscd.comm"))
		out, err := cmd.CombinedOutput()
		t.Logf("child:\n%s", out)
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		return
	}

	proxy := &daemonProxy{path: os.Getenv("PCSCLITE_CSOCK_NAME"), target: os.Getenv(pcscdSocketEnv)}
	defer proxy.stop()
	logs := &logBuf{}
	defer func() { t.Logf("log:\n%s", strings.Join(logs.lines, "\n")) }()
	c, err := Open(Options{PollInterval: 100 * time.Millisecond, Logf: logs.logf})
	if err != nil {
		t.Fatalf("Open with the service down: %v", err)
	}
	defer c.Close()
	blocks := watchBlocked(c)
	ctx := t.Context()

	// Down at Open.
	if _, err := c.Readers(ctx); !errors.Is(err, reader.ErrNoService) {
		t.Fatalf("Readers with the service down: %v, want ErrNoService", err)
	}
	if _, err := c.Connect(ctx, vpcdReader); !errors.Is(err, reader.ErrNoService) {
		t.Errorf("Connect with the service down: %v, want ErrNoService", err)
	}
	if err := c.WaitCard(ctx, vpcdReader, true); !errors.Is(err, reader.ErrNoService) {
		t.Errorf("WaitCard with the service down: %v, want ErrNoService", err)
	}
	var got []string
	appeared := async(func() error {
		var err error
		got, err = c.WaitReadersChange(ctx, nil)
		return err
	})
	proxy.start(t)
	if err := await(t, appeared); err != nil || !slices.Contains(got, vpcdReader) {
		t.Fatalf("WaitReadersChange across the service starting = %q, %v", got, err)
	}
	names, err := c.Readers(ctx)
	if err != nil || !slices.Contains(names, vpcdReader) {
		t.Fatalf("Readers after the service started = %q, %v", names, err)
	}

	// Restart while idle: the next call recovers by itself.
	proxy.restart()
	if names, err := c.Readers(ctx); err != nil || !slices.Contains(names, vpcdReader) {
		t.Fatalf("Readers after a restart = %q, %v", names, err)
	}
	if !logs.contains("establishing a new one") {
		t.Errorf("no recovery in the log: %q", logs.lines)
	}

	// Restart under a wait and a connection.
	v := dialCard(t)
	defer v.remove()
	waitCard(t, c, true)
	card, err := c.Connect(ctx, vpcdReader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := card.Transmit(ctx, getUID); err != nil {
		t.Fatal(err)
	}
	n := blocks.count()
	waiting := async(func() error { return c.WaitCard(ctx, vpcdReader, false) })
	blocks.await(t, n+perWait) // blocked on its own context
	proxy.restart()
	if err := await(t, waiting); !errors.Is(err, reader.ErrNoService) {
		t.Errorf("WaitCard across a restart: %v, want ErrNoService", err)
	}
	if _, err := card.Transmit(ctx, getUID); !errors.Is(err, reader.ErrNoService) && !errors.Is(err, reader.ErrCardRemoved) {
		t.Errorf("Transmit on a connection from before the restart: %v", err)
	}
	if err := card.Close(); err != nil {
		t.Errorf("Close on a connection from before the restart: %v", err)
	}
	// pcscd releases the dead client's exclusive hold on its own time.
	deadline := time.Now().Add(bound)
	for {
		card, err = c.Connect(ctx, vpcdReader)
		if !errors.Is(err, reader.ErrSharingViolation) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Connect after the restart: %v", err)
	}
	if rsp, err := card.Transmit(ctx, getUID); err != nil || !bytes.Equal(rsp, uidRsp) {
		t.Errorf("Transmit after the restart = % X, %v", rsp, err)
	}
	_ = card.Close()

	// Stopped: no service, and no readers for WaitReadersChange.
	proxy.stop()
	if _, err := c.Readers(ctx); !errors.Is(err, reader.ErrNoService) {
		t.Errorf("Readers with the service stopped: %v, want ErrNoService", err)
	}
	if got, err := c.WaitReadersChange(ctx, names); err != nil || got == nil || len(got) != 0 {
		t.Errorf("WaitReadersChange with the service stopped = %#v, %v; want an empty list", got, err)
	}
	proxy.start(t)
	if names, err := c.Readers(ctx); err != nil || !slices.Contains(names, vpcdReader) {
		t.Fatalf("Readers after the service came back = %q, %v", names, err)
	}
	if !logs.contains(serviceName+" not available") || !logs.contains(serviceName+" available again") {
		t.Errorf("service transitions missing from the log: %q", logs.lines)
	}
}
