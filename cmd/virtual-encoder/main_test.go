package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
)

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--card", "nope"}, `--card "nope": unknown kind`},
		{[]string{"--uid", "xyz"}, `--uid "xyz": want hex bytes`},
		{[]string{"--uid", "0102"}, "4- or 7-byte UID"},
		{[]string{"--remove-after", "-1"}, "--remove-after -1"},
		{[]string{"--stay-out"}, "--stay-out: needs --remove-after"},
		{[]string{"--delay", "-1s"}, "--delay -1s"},
		{[]string{"--vpcd", "localhost"}, "want host:port"},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus (see --help)"},
		{[]string{"stray"}, `unexpected argument "stray"`},
		{[]string{"--random-uid"}, "--random-uid: only for --card mifare_desfire_ev2 or mifare_desfire_ev3"},
		{[]string{"--card", "ntag213", "--desfire-size", "2048"}, "--desfire-size: only for --card"},
		{[]string{"--card", "mifare_desfire_ev3", "--desfire-size", "1024"}, "DESFire size 1024"},
		{[]string{"--card", "mifare_desfire_ev2", "--uid", "04112233"}, "DESFire needs a 7-byte UID"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut)
		msg := errOut.String()
		if code != 1 || !strings.Contains(msg, tc.want) || strings.Count(msg, "\n") != 1 || out.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1 and one line with %q", tc.args, code, out.String(), msg, tc.want)
		}
	}
}

func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"--card KIND", "ntag216", "mifare_desfire_ev3", "--random-uid", "--desfire-size", "--aes-picc-key", "--uid HEX", "--vpcd ADDR", "--state FILE", "--remove-after N", "--delay DURATION", "Ctrl-C"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestStateFileExistsRejectsNewCardFlags(t *testing.T) {
	state := filepath.Join(t.TempDir(), "card.json")
	os.WriteFile(state, []byte("{}"), 0o600)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--state", state, "--uid", "01020304"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "already holds a card") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"--state", state, "--card", "mifare_desfire_ev2", "--random-uid"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "already holds a card") {
		t.Fatalf("DESFire flags: exit %d, stderr %q", code, errOut.String())
	}
}

// command runs the command in slot until stop is called.
type command struct {
	out, errOut syncbuf.Buffer
	cancel      context.CancelFunc
	code        chan int
}

func start(t *testing.T, slot hwtest.Slot, args ...string) *command {
	t.Helper()
	orig := lockSlot
	lockSlot = func(string) (func(), error) { return func() {}, nil } // the test holds it
	t.Cleanup(func() { lockSlot = orig })
	ctx, cancel := context.WithCancel(context.Background())
	c := &command{cancel: cancel, code: make(chan int, 1)}
	go func() { c.code <- run(ctx, append(args, "--vpcd", slot.Addr), &c.out, &c.errOut) }()
	t.Cleanup(func() { c.stop(t) })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.out.String(), "Ctrl-C") {
		if time.Now().After(deadline) {
			t.Fatalf("no ready line; stderr: %s", c.errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(c.out.String(), slot.Reader) {
		t.Fatalf("ready line %q does not name %q", c.out.String(), slot.Reader)
	}
	return c
}

// stop is Ctrl-C: it returns once the command has exited.
func (c *command) stop(t *testing.T) {
	c.cancel()
	select {
	case code := <-c.code:
		if code != 0 {
			t.Errorf("exit %d after stop; stderr: %s", code, c.errOut.String())
		}
		c.code <- code
	case <-time.After(10 * time.Second):
		t.Fatal("command did not exit")
	}
}

func transmit(t *testing.T, c *scard.Card, apdu ...byte) []byte {
	t.Helper()
	resp, err := c.Transmit(apdu)
	if err != nil || len(resp) < 2 || !bytes.HasSuffix(resp, []byte{0x90, 0x00}) {
		t.Fatalf("APDU % X: % X, %v", apdu, resp, err)
	}
	return resp[:len(resp)-2]
}

func connect(t *testing.T, reader string) *scard.Card {
	t.Helper()
	if err := hwtest.WaitCard(reader, true, nil, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, err := scard.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctx.Release() })
	c, err := ctx.Connect(reader, scard.ShareExclusive, scard.ProtocolAny)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(scard.LeaveCard) })
	return c
}

// authBlock4 loads the transport key A and authenticates sector 1.
func authBlock4(t *testing.T, c *scard.Card) {
	t.Helper()
	transmit(t, c, 0xFF, 0x82, 0x00, 0x00, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
	transmit(t, c, 0xFF, 0x86, 0x00, 0x00, 0x05, 0x01, 0x00, 0x04, 0x60, 0x00)
}

func TestStateSurvivesRuns(t *testing.T) {
	hwtest.Require(t)
	slot := hwtest.AcquireSlot(t)
	state := filepath.Join(t.TempDir(), "card.json")
	data := []byte("room 1207 key #1")

	t.Run("encode", func(t *testing.T) {
		cmd := start(t, slot, "--uid", "0A0B0C0D", "--state", state)
		c := connect(t, slot.Reader)
		if uid := transmit(t, c, 0xFF, 0xCA, 0x00, 0x00, 0x00); !bytes.Equal(uid, []byte{0x0A, 0x0B, 0x0C, 0x0D}) {
			t.Fatalf("UID % X", uid)
		}
		authBlock4(t, c)
		transmit(t, c, append([]byte{0xFF, 0xD6, 0x00, 0x04, 0x10}, data...)...)
		cmd.stop(t)
		if err := hwtest.WaitCard(slot.Reader, false, nil, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	fi, err := os.Stat(state)
	if err != nil {
		t.Fatalf("state not saved: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state mode %v, want 0600", fi.Mode().Perm())
	}
	t.Run("read back", func(t *testing.T) {
		cmd := start(t, slot, "--state", state)
		if !strings.Contains(cmd.out.String(), "0A0B0C0D from "+state) {
			t.Fatalf("ready line %q does not say the card came from the state file", cmd.out.String())
		}
		c := connect(t, slot.Reader)
		authBlock4(t, c)
		if got := transmit(t, c, 0xFF, 0xB0, 0x00, 0x04, 0x10); !bytes.Equal(got, data) {
			t.Fatalf("block 4 = %q, want %q", got, data)
		}
	})
}

func TestRemoveAfter(t *testing.T) {
	hwtest.Require(t)
	slot := hwtest.AcquireSlot(t)
	state := filepath.Join(t.TempDir(), "card.json")
	cmd := start(t, slot, "--remove-after", "2", "--state", state)
	c := connect(t, slot.Reader)
	transmit(t, c, 0xFF, 0xCA, 0x00, 0x00, 0x00)
	if resp, err := c.Transmit([]byte{0xFF, 0xCA, 0x00, 0x00, 0x00}); err == nil && len(resp) >= 2 {
		t.Fatalf("APDU 2 should have lost the card, got % X", resp)
	}
	if err := hwtest.WaitCard(slot.Reader, false, nil, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("state not saved after the removal: %v", err)
	}
	// Back without the fault.
	c.Disconnect(scard.LeaveCard)
	c = connect(t, slot.Reader)
	for range 3 {
		transmit(t, c, 0xFF, 0xCA, 0x00, 0x00, 0x00)
	}
	log := cmd.errOut.String()
	if !strings.Contains(log, "left the field during APDU 2") || strings.Count(log, "card inserted") != 2 {
		t.Fatalf("log:\n%s", log)
	}
}

// A random-UID DESFire EV3 2K through pcscd: anticollision gives a random
// 08xxxxxx UID, GetVersion names EV3 and 2 KB.
func TestDESFireFlags(t *testing.T) {
	slot := hwtest.AcquireSlot(t)
	start(t, slot, "--card", "mifare_desfire_ev3", "--random-uid", "--desfire-size", "2048")
	c := connect(t, slot.Reader)
	if uid := transmit(t, c, 0xFF, 0xCA, 0x00, 0x00, 0x00); len(uid) != 4 || uid[0] != 0x08 {
		t.Fatalf("UID % X, want a random 08xxxxxx", uid)
	}
	resp, err := c.Transmit([]byte{0x90, 0x60, 0x00, 0x00, 0x00})
	if err != nil || len(resp) != 9 || !bytes.HasSuffix(resp, []byte{0x91, 0xAF}) || resp[3] != 0x33 || resp[5] != 0x16 {
		t.Fatalf("GetVersion: % X, %v", resp, err)
	}
}
