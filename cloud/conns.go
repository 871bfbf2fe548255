package cloud

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Defaults of the connection limits of Serve.
const (
	// DefaultMaxConns bounds the open connections, bridge links included
	// (2000 idle bridges take about 40 MB, docs/cloud.md).
	DefaultMaxConns = 4096
	// DefaultMaxConnsPerSource bounds the open connections from one remote
	// address, so one client cannot take them all. Behind a proxy every
	// connection comes from the proxy: turn it off there.
	DefaultMaxConnsPerSource = 256
)

// connLimiter is a listener that closes, at once, a connection beyond the
// limits instead of serving it: then a flood from one address cannot
// exhaust the process's file descriptors and memory, and /healthz and the
// other clients still get in (issue 10).
type connLimiter struct {
	net.Listener
	max, perSource int // <= 0: no limit
	log            *zap.Logger

	mu       sync.Mutex
	open     int
	bySource map[string]int
	refused  atomic.Int64
	loggedAt time.Time // last warning about refusals
}

func limitConns(ln net.Listener, max, perSource int, log *zap.Logger) *connLimiter {
	return &connLimiter{Listener: ln, max: max, perSource: perSource, log: log, bySource: map[string]int{}}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := source(c.RemoteAddr())
		if l.take(src) {
			return &limitedConn{Conn: c, l: l, src: src}, nil
		}
		_ = c.Close()
		l.noteRefused()
	}
}

func (l *connLimiter) take(src string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if (l.max > 0 && l.open >= l.max) || (l.perSource > 0 && l.bySource[src] >= l.perSource) {
		return false
	}
	l.open++
	l.bySource[src]++
	return true
}

func (l *connLimiter) release(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
}

// noteRefused counts a refusal and warns at most once a minute: a flood
// must not become a flood of log lines.
func (l *connLimiter) noteRefused() {
	n := l.refused.Add(1)
	l.mu.Lock()
	now := time.Now()
	due := now.Sub(l.loggedAt) >= time.Minute
	if due {
		l.loggedAt = now
	}
	open, sources := l.open, len(l.bySource)
	l.mu.Unlock()
	if due {
		l.log.Warn("connections refused: limit reached", zap.Int64("refused_total", n), zap.Int("open", open),
			zap.Int("sources", sources), zap.Int("max_conns", l.max), zap.Int("max_conns_per_source", l.perSource))
	}
}

// source is the remote IP of a connection, without the port.
func source(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// limitedConn gives its place back when closed, once; a hijacked
// websocket closes it the same way.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	src  string
	once sync.Once
}

func (c *limitedConn) Close() error {
	// Given back before the close, so a peer that has seen the close
	// finds the place free.
	c.once.Do(func() { c.l.release(c.src) })
	return c.Conn.Close()
}
