package cloudtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// IdleStats is what holding idle bridge links costs.
type IdleStats struct {
	Links int
	// BytesPerLink is the growth of heap in use plus goroutine stacks,
	// after a GC, divided by the links. The client ends are raw sockets in
	// the same process and count too (a few hundred bytes each).
	BytesPerLink float64
	// GoroutinesPerLink is the growth of goroutines divided by the links.
	GoroutinesPerLink float64
	// Setup is how long registering and connecting took.
	Setup time.Duration
}

// HoldIdleBridges registers n bridges in env's workspace, connects each
// with a minimal raw websocket client that says hello (one encoder) and
// then stays silent, and measures the memory the links hold. The links
// are closed when it returns.
func HoldIdleBridges(tb testing.TB, env *Env, n int) IdleStats {
	tb.Helper()
	ctx := context.Background()
	start := time.Now()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("Idle %d", i)
	}
	creds, err := env.Server.CreateBridgeTokens(ctx, env.Workspace.ID, names)
	if err != nil {
		tb.Fatal(err)
	}
	u, err := url.Parse(env.HTTP.URL)
	if err != nil {
		tb.Fatal(err)
	}
	before := memory()
	conns := make([]net.Conn, 0, n)
	// The links stay up until the test ends, so a caller can measure
	// with them attached.
	tb.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for _, c := range creds {
		conn, err := rawHello(u.Host, c.BridgeID, c.Token)
		if err != nil {
			tb.Fatalf("bridge %d of %d: %v", len(conns)+1, n, err)
		}
		conns = append(conns, conn)
	}
	// rawHello returned after the welcome, and the hub makes a link
	// current before it queues the welcome.
	for _, c := range creds {
		if !env.Server.Online(c.BridgeID) {
			tb.Fatalf("bridge %s not online after its welcome", c.BridgeID)
		}
	}
	setup := time.Since(start)
	after := memory()

	return IdleStats{
		Links:             n,
		BytesPerLink:      float64(after.bytes-before.bytes) / float64(n),
		GoroutinesPerLink: float64(after.goroutines-before.goroutines) / float64(n),
		Setup:             setup,
	}
}

type mem struct {
	bytes      int64
	goroutines int
}

func memory() mem {
	// Each GC may halve a goroutine stack that is mostly unused; a few
	// rounds let stacks grown during the handshake settle.
	for i := 0; i < 6; i++ {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return mem{bytes: int64(m.HeapInuse + m.StackInuse), goroutines: runtime.NumGoroutine()}
}

// rawHello opens a websocket with as little client state as possible: the
// handshake by hand, one masked text frame (the hello), and the welcome
// read back. The connection is then left unread.
func rawHello(addr, bridgeID, token string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := "GET " + protocol.Path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\n" +
		"Authorization: Bearer " + token + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, fmt.Errorf("upgrade refused: %s", resp.Status)
	}
	hello := fmt.Sprintf(`{"v":1,"type":"hello","hello":{"bridge_id":%q,"software_version":"idle","protocol_version":1,`+
		`"encoders":[{"id":"e1","display_name":"Encoder","reader_name":"Reader","technologies":["ntag213"]}]}}`, bridgeID)
	if err := writeMasked(conn, []byte(hello)); err != nil {
		conn.Close()
		return nil, err
	}
	payload, err := readFrame(br)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if !strings.Contains(string(payload), `"welcome"`) {
		conn.Close()
		return nil, fmt.Errorf("no welcome: %q", payload)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

func writeMasked(w io.Writer, payload []byte) error {
	hdr := []byte{0x81} // FIN, text
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	mask := make([]byte, 4)
	_, _ = rand.Read(mask)
	hdr = append(hdr, mask...)
	masked := make([]byte, len(payload))
	for i, b := range payload {
		masked[i] = b ^ mask[i%4]
	}
	_, err := w.Write(append(hdr, masked...))
	return err
}

func readFrame(r io.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > protocol.MaxMessageSize {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return p, err
}
