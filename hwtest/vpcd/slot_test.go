package vpcd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// fakeVPCD is the driver's side of the protocol, for tests without pcscd.
type fakeVPCD struct {
	t  *testing.T
	ln net.Listener
}

func newFakeVPCD(t *testing.T) *fakeVPCD {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &fakeVPCD{t: t, ln: ln}
}

func (f *fakeVPCD) addr() string { return f.ln.Addr().String() }

func (f *fakeVPCD) accept() net.Conn {
	f.t.Helper()
	f.ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	c, err := f.ln.Accept()
	if err != nil {
		f.t.Fatalf("accept: %v", err)
	}
	f.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func send(t *testing.T, c net.Conn, msg ...byte) {
	t.Helper()
	if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(msg)))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
}

func recv(t *testing.T, c net.Conn) []byte {
	t.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("read header: %v", err)
	}
	msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(c, msg); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return msg
}

func insert(t *testing.T, ctx context.Context, addr string, card chip.Card) *Slot {
	t.Helper()
	s, err := Insert(ctx, addr, card)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Remove() })
	return s
}

func waitDone(t *testing.T, s *Slot) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("slot did not end")
	}
}

// expectEOF asserts the slot closed c without sending anything.
func expectEOF(t *testing.T, c net.Conn) {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil || len(b) != 0 {
		t.Fatalf("want a clean close with nothing sent, got % X, %v", b, err)
	}
}

func TestProtocol(t *testing.T) {
	f := newFakeVPCD(t)
	card := newTestCard()
	s := insert(t, context.Background(), f.addr(), card)
	c := f.accept()

	select {
	case <-s.Attached():
		t.Fatal("attached before vpcd said anything")
	default:
	}
	send(t, c, ctrlATR)
	if got := recv(t, c); !bytes.Equal(got, classic1kATR) {
		t.Fatalf("ATR: got % X", got)
	}
	<-s.Attached()

	send(t, c, ctrlOn)
	send(t, c, ctrlReset)
	send(t, c, ctrlOff)
	send(t, c, getUID...)
	if got, want := recv(t, c), []byte{0x04, 0xA1, 0xB2, 0xC3, 0x90, 0x00}; !bytes.Equal(got, want) {
		t.Fatalf("GET DATA: got % X, want % X", got, want)
	}
	if apdus, resets := card.counts(); apdus != 1 || resets != 3 {
		t.Fatalf("card saw %d APDUs, %d resets; want 1, 3", apdus, resets)
	}
	big := bytes.Repeat([]byte{0xAB}, 4000) // spans several reads
	send(t, c, big...)
	if got := recv(t, c); !bytes.Equal(got, append(big, 0x90, 0x00)) {
		t.Fatalf("long APDU: got %d bytes", len(got))
	}
	if s.APDUs() != 2 {
		t.Fatalf("APDUs() = %d, want 2", s.APDUs())
	}
	if err := s.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	expectEOF(t, c)
	if s.Err() != nil {
		t.Fatalf("Err after Remove = %v", s.Err())
	}
}

func TestCardRemovedClosesWithoutAnswer(t *testing.T) {
	f := newFakeVPCD(t)
	card := newTestCard()
	card.failAt(2, chip.ErrRemoved)
	s := insert(t, context.Background(), f.addr(), card)
	c := f.accept()
	send(t, c, getUID...)
	recv(t, c)
	send(t, c, getUID...)
	expectEOF(t, c)
	waitDone(t, s)
	if !errors.Is(s.Err(), chip.ErrRemoved) {
		t.Fatalf("Err = %v, want chip.ErrRemoved", s.Err())
	}
	if err := s.Remove(); err != nil {
		t.Fatalf("Remove after the card left: %v", err)
	}
}

func TestTransmitErrorResetsAfterHeaderAndReconnects(t *testing.T) {
	f := newFakeVPCD(t)
	card := newTestCard()
	card.failAt(1, errors.New("rf error"))
	s := insert(t, context.Background(), f.addr(), card)
	c := f.accept()
	send(t, c, getUID...)

	// vpcd must see a length header and then a reset, never a body.
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("want a length header first: %v", err)
	}
	_, err := c.Read(make([]byte, 16))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after the header: %v, want ECONNRESET", err)
	}
	// The next connection was dialled before the reset.
	c2 := f.accept()
	send(t, c2, ctrlATR)
	if got := recv(t, c2); !bytes.Equal(got, classic1kATR) {
		t.Fatalf("ATR on the new connection: % X", got)
	}
	send(t, c2, getUID...)
	recv(t, c2)
	select {
	case <-s.Done():
		t.Fatalf("slot ended: %v", s.Err())
	default:
	}
	if s.APDUs() != 2 {
		t.Fatalf("APDUs() = %d, want 2", s.APDUs())
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	expectEOF(t, c2)
}

func TestVPCDClosing(t *testing.T) {
	f := newFakeVPCD(t)
	s := insert(t, context.Background(), f.addr(), newTestCard())
	c := f.accept()
	send(t, c, ctrlATR)
	recv(t, c)
	c.Close()
	waitDone(t, s)
	if !errors.Is(s.Err(), ErrClosed) {
		t.Fatalf("Err = %v, want ErrClosed", s.Err())
	}
	if err := s.Remove(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Remove = %v, want ErrClosed", err)
	}
}

func TestMalformed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes []byte
		want  error
	}{
		{"empty message", []byte{0, 0}, ErrProtocol},
		{"unknown control code", []byte{0, 1, 0x03}, ErrProtocol},
		{"cut-off header", []byte{0}, ErrClosed},
		{"cut-off body", []byte{0, 10, 1, 2, 3}, ErrClosed},
		{"length beyond the data", []byte{0xFF, 0xFF, 0x00, 0xA4}, ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeVPCD(t)
			s := insert(t, context.Background(), f.addr(), newTestCard())
			c := f.accept()
			c.Write(tc.bytes)
			if tc.want == ErrClosed {
				c.(*net.TCPConn).CloseWrite()
			}
			waitDone(t, s)
			if !errors.Is(s.Err(), tc.want) {
				t.Fatalf("Err = %v, want %v", s.Err(), tc.want)
			}
			expectEOF(t, c)
		})
	}
}

func TestContextEndsSlot(t *testing.T) {
	f := newFakeVPCD(t)
	card := newTestCard()
	card.delay = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	s := insert(t, ctx, f.addr(), card)
	c := f.accept()
	send(t, c, getUID...) // cancelled while the card works on it
	time.Sleep(10 * time.Millisecond)
	cancel()
	waitDone(t, s)
	if !errors.Is(s.Err(), context.Canceled) {
		t.Fatalf("Err = %v, want context.Canceled", s.Err())
	}
	if err := s.Remove(); err != nil {
		t.Fatalf("Remove after cancel: %v", err)
	}
	io.ReadAll(c) // closed; the answer may or may not have gone out
}

func TestRemoveWhileQueued(t *testing.T) {
	// vpcd has not accepted: the card waits in the backlog.
	f := newFakeVPCD(t)
	s := insert(t, context.Background(), f.addr(), newTestCard())
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Attached():
		t.Fatal("attached without vpcd talking")
	default:
	}
}

func TestInsertWaitsForVPCDToListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			got <- nil
			return
		}
		defer ln.Close()
		c, _ := ln.Accept()
		got <- c
	}()
	s, err := Insert(context.Background(), addr, newTestCard())
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	defer s.Remove()
	c := <-got
	if c == nil {
		t.Skip("port taken meanwhile")
	}
	defer c.Close()
	send(t, c, ctrlATR)
	recv(t, c)
}

func TestInsertGivesUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := Insert(ctx, addr, newTestCard()); err == nil {
		t.Fatal("Insert succeeded with nothing listening")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Insert took %v past its context", d)
	}
}

func TestLockSlot(t *testing.T) {
	addr := "127.0.0.1:1" // a port no vpcd uses
	unlock, err := LockSlot(addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockSlot(addr); !errors.Is(err, ErrSlotBusy) {
		t.Fatalf("second LockSlot = %v, want ErrSlotBusy", err)
	}
	unlock()
	unlock() // idempotent
	unlock2, err := LockSlot(addr)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	// WaitSlot waits for a held slot until its context ends, and takes a
	// free one.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := WaitSlot(ctx, addr); !errors.Is(err, ErrSlotBusy) || !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitSlot on a held slot after cancel = %v, want ErrSlotBusy and context.Canceled", err)
	}
	unlock2()
	unlock3, err := WaitSlot(t.Context(), addr)
	if err != nil {
		t.Fatalf("WaitSlot on a free slot: %v", err)
	}
	unlock3()
	if p, _ := LockPath("127.0.0.1:35963"); filepath.Base(p) != "encoder-bridge-vpcd-35963.lock" {
		t.Fatalf("LockPath = %s", p)
	}
}

func TestReadersFromConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("libccidtwin", "# comment\n#FRIENDLYNAME \"GemPCTwin serial\"\n")
	write("vpcd", "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME   /dev/null:0x8C7B\nLIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID    0x8C7D\n")
	rs, err := readersFrom(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Reader{{"Virtual PCD 00 00", "127.0.0.1:35965"}, {"Virtual PCD 00 01", "127.0.0.1:35966"}}
	if len(rs) != 2 || rs[0] != want[0] || rs[1] != want[1] {
		t.Fatalf("got %v, want %v", rs, want)
	}
	// Two vpcd entries: pcscd's numbering is not in the files.
	write("vpcd2", "FRIENDLYNAME\t\"Other PCD\"\nLIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID 0x9000\n")
	if rs, _ := readersFrom(dir); rs != nil {
		t.Fatalf("two entries: got %v, want nil (defaults)", rs)
	}
}

func TestConfiguredReaders(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
		want  []Reader
		err   bool
	}{
		{
			name: "two entries",
			files: map[string]string{"vpcd": "FRIENDLYNAME \"A #1\"\nDEVICENAME /dev/null:40001\nLIBPATH /x/libifdvpcd.so\nCHANNELID 40001\n" +
				"FRIENDLYNAME \"A #2\"\nDEVICENAME /dev/null:40003\nLIBPATH /x/libifdvpcd.so\nCHANNELID 0x9C43\n"},
			want: []Reader{{"A #1 00 00", "127.0.0.1:40001"}, {"A #1 00 01", "127.0.0.1:40002"}, {"A #2 00 00", "127.0.0.1:40003"}, {"A #2 00 01", "127.0.0.1:40004"}},
		},
		{
			name:  "same name twice",
			files: map[string]string{"vpcd": "FRIENDLYNAME \"A\"\nLIBPATH /x/libifdvpcd.so\nCHANNELID 40001\nFRIENDLYNAME \"A\"\nLIBPATH /x/libifdvpcd.so\nCHANNELID 40003\n"},
			err:   true,
		},
		{name: "no vpcd entry", files: map[string]string{"ccid": "FRIENDLYNAME \"B\"\nLIBPATH /x/libccidtwin.so\n"}, err: true},
		{name: "bad port", files: map[string]string{"vpcd": "FRIENDLYNAME \"A\"\nLIBPATH /x/libifdvpcd.so\nCHANNELID 70000\n"}, err: true},
		{name: "missing directory", err: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "conf")
			if c.files != nil {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for n, s := range c.files {
				if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv(EnvReaderConf, dir)
			got, err := ConfiguredReaders()
			if c.err {
				if !errors.Is(err, ErrConf) {
					t.Fatalf("err = %v, want ErrConf", err)
				}
				if rs := Readers(); rs != nil {
					t.Fatalf("Readers() = %v with a broken private configuration, want none (not the machine's)", rs)
				}
				return
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
			if rs := Readers(); !slices.Equal(rs, c.want) {
				t.Fatalf("Readers() = %v, want %v", rs, c.want)
			}
		})
	}
	t.Setenv(EnvReaderConf, "")
	if _, err := ConfiguredReaders(); !errors.Is(err, ErrConf) {
		t.Fatalf("unset: err = %v, want ErrConf", err)
	}
}
