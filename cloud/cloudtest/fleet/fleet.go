// Package fleet simulates many bridges for measuring the cloud: each
// bridge is a real websocket link to protocol.Path that says hello with
// its encoders, pings the cloud as the bridge's link does (every 25 s,
// dead without a frame or pong for 40 s), answers the cloud's pings, and,
// when asked, answers every job at once with an ack and a valid result.
// Nothing touches a card.
//
// The command cloud/cloudtest/cmd/fakebridges runs a fleet in a process
// of its own, so that the client ends of 10,000 links do not count
// against the cloud process's open files. It is a test tool: nothing
// shipped imports it.
//
// It must not import cloud or any cloud package: it sees the cloud only
// through the wire, as a bridge does.
package fleet

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// The bridge's link timings (bridge/link's defaults).
const (
	DefaultPingInterval = 25 * time.Second
	DefaultPongTimeout  = 15 * time.Second
	DefaultDialers      = 32
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNoWelcome: the cloud answered a hello with something else.
	ErrNoWelcome = errors.New("fleet: no welcome")
	// ErrBadTokens: the tokens file has a line that is not a token.
	ErrBadTokens = errors.New("fleet: bad tokens file")
	// ErrConfig: a Config that cannot run.
	ErrConfig = errors.New("fleet: bad config")
)

// Token is a bridge's id and bearer token; its JSON is one line of a
// tokens file (the shape of cloud.BridgeToken).
type Token struct {
	BridgeID string `json:"bridge_id"`
	Token    string `json:"bridge_token"`
}

// ReadTokens reads a tokens file: one JSON Token a line.
func ReadTokens(r io.Reader) ([]Token, error) {
	var out []Token
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var t Token
		if err := json.Unmarshal([]byte(line), &t); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadTokens, n, err)
		}
		if t.BridgeID == "" || t.Token == "" {
			return nil, fmt.Errorf("%w: line %d: bridge_id or bridge_token missing", ErrBadTokens, n)
		}
		out = append(out, t)
	}
	return out, sc.Err()
}

// WriteTokens writes tokens as a tokens file.
func WriteTokens(w io.Writer, tokens []Token) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, t := range tokens {
		if err := enc.Encode(t); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Job is a job as it reached a simulated bridge.
type Job struct {
	// At is when its frame was read, on the wall clock (comparable across
	// processes of one machine).
	At              time.Time
	BridgeID        string
	JobID           string
	ActionAttemptID string
	Kind            protocol.JobKind
}

// Config configures a fleet. Tokens and URLs are required.
type Config struct {
	// Tokens are the bridges; bridge i dials URLs[i % len(URLs)].
	Tokens []Token
	// URLs are the clouds' base URLs (http:// or ws://, loopback, or
	// https:// or wss://); protocol.Path is appended.
	URLs []string
	// Encoders per bridge (default 1).
	Encoders int
	// Answer answers every job at once: ack, then a valid result (an
	// encode's card holds the job's credential; a scan finds a blank
	// card).
	Answer bool
	// OnJob, when set, hears every job as it arrives, from the link's
	// reader: it must not block.
	OnJob func(Job)
	// PingInterval and PongTimeout default to the bridge's.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// Dialers is how many links connect at once (default 32).
	Dialers int
}

// Stats are a fleet's counters.
type Stats struct {
	Links      int   `json:"links"`       // links up now
	Dropped    int64 `json:"dropped"`     // links that ended without Close
	Jobs       int64 `json:"jobs"`        // job frames received
	ResultAcks int64 `json:"result_acks"` // result_ack frames received
	Refusals   int64 `json:"refusals"`    // error frames received
	Pings      int64 `json:"pings"`       // pings sent
	Pongs      int64 `json:"pongs"`       // pongs received
	// LastDrop says why the last dropped link ended, "" if none did.
	LastDrop string `json:"last_drop,omitempty"`
}

// Fleet is a set of connected simulated bridges.
type Fleet struct {
	cfg   Config
	links []atomic.Pointer[bridgeLink] // nil until connected
	wg    sync.WaitGroup
	stop  chan struct{}

	up                                          atomic.Int64
	dropped, jobs, acks, refusals, pings, pongs atomic.Int64
	lastDrop                                    atomic.Pointer[string]
	closeOnce                                   sync.Once
}

type bridgeLink struct {
	f        *Fleet
	tok      Token
	ws       *websocket.Conn
	wmu      sync.Mutex // one data writer at a time (pings may interleave)
	closing  atomic.Bool
	encoders []protocol.Encoder
}

// Start connects every bridge (hello, welcome) and returns when all are
// up, or the first failure after closing those that were.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if len(cfg.Tokens) == 0 || len(cfg.URLs) == 0 {
		return nil, fmt.Errorf("%w: tokens and URLs are required", ErrConfig)
	}
	if cfg.Encoders <= 0 {
		cfg.Encoders = 1
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PongTimeout <= 0 {
		cfg.PongTimeout = DefaultPongTimeout
	}
	if cfg.Dialers <= 0 {
		cfg.Dialers = DefaultDialers
	}
	urls := make([]string, len(cfg.URLs))
	for i, u := range cfg.URLs {
		w, err := wsURL(u)
		if err != nil {
			return nil, err
		}
		urls[i] = w
	}
	f := &Fleet{cfg: cfg, links: make([]atomic.Pointer[bridgeLink], len(cfg.Tokens)), stop: make(chan struct{})}
	dialer := &websocket.Dialer{
		HandshakeTimeout: 15 * time.Second,
		// Small read buffers and pooled write buffers: the fleet's own
		// memory is not what is measured, but 5,000 links a process
		// should stay small.
		ReadBufferSize:  1024,
		WriteBufferPool: &sync.Pool{},
	}
	// Pinging starts with the first link, not after the last: connecting
	// thousands may take longer than a link may stay silent.
	f.wg.Go(f.pinger)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	errc := make(chan error, cfg.Dialers)
	var dials sync.WaitGroup
	for range cfg.Dialers {
		dials.Go(func() {
			for i := range next {
				l, err := f.connect(ctx, dialer, urls[i%len(urls)], i)
				if err != nil {
					errc <- fmt.Errorf("bridge %d of %d: %w", i+1, len(cfg.Tokens), err)
					cancel()
					return
				}
				f.links[i].Store(l)
			}
		})
	}
feed:
	for i := range cfg.Tokens {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	dials.Wait()
	select {
	case err := <-errc:
		f.Close()
		return nil, err
	default:
	}
	if err := ctx.Err(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func wsURL(u string) (string, error) {
	switch {
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + strings.TrimPrefix(u, "http://")
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + strings.TrimPrefix(u, "https://")
	case strings.HasPrefix(u, "ws://"), strings.HasPrefix(u, "wss://"):
	default:
		return "", fmt.Errorf("%w: URL %q: want http://, https://, ws:// or wss://", ErrConfig, u)
	}
	return strings.TrimSuffix(strings.TrimSuffix(u, "/"), protocol.Path) + protocol.Path, nil
}

// connect dials one bridge, says hello and waits for the welcome, as the
// bridge's agent does; a refused dial is tried twice more.
func (f *Fleet) connect(ctx context.Context, d *websocket.Dialer, url string, i int) (*bridgeLink, error) {
	tok := f.cfg.Tokens[i]
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok.Token)
	var ws *websocket.Conn
	var err error
	for attempt := range 3 {
		var resp *http.Response
		ws, resp, err = d.DialContext(ctx, url, h)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err == nil || ctx.Err() != nil || (resp != nil && resp.StatusCode == http.StatusUnauthorized) {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	l := &bridgeLink{f: f, tok: tok, ws: ws}
	for e := range f.cfg.Encoders {
		id := protocol.EncoderID(fmt.Sprintf("fleet-%d", e+1))
		l.encoders = append(l.encoders, protocol.Encoder{ID: id, DisplayName: "Encoder " + string(id),
			ReaderName: "Simulated reader " + string(id), Technologies: []string{"ntag213", "mifare_classic_1k"}})
	}
	ws.SetReadLimit(protocol.MaxMessageSize)
	m := protocol.New(protocol.TypeHello)
	m.Hello = &protocol.Hello{BridgeID: tok.BridgeID, SoftwareVersion: "fleet", ProtocolVersion: protocol.Version, Encoders: l.encoders}
	if err := l.send(m); err != nil {
		ws.Close()
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(f.liveness()))
	_, data, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("waiting for the welcome: %w", err)
	}
	w, err := protocol.Decode(data)
	if err != nil || w.Type != protocol.TypeWelcome {
		ws.Close()
		return nil, fmt.Errorf("%w: got %.200q", ErrNoWelcome, data)
	}
	ws.SetPongHandler(func(string) error {
		f.pongs.Add(1)
		return ws.SetReadDeadline(time.Now().Add(f.liveness()))
	})
	f.up.Add(1)
	f.wg.Go(l.read)
	return l, nil
}

func (f *Fleet) liveness() time.Duration { return f.cfg.PingInterval + f.cfg.PongTimeout }

func (l *bridgeLink) send(m *protocol.Message) error {
	b, err := protocol.Encode(m)
	if err != nil {
		return err
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	_ = l.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return l.ws.WriteMessage(websocket.TextMessage, b)
}

func (l *bridgeLink) read() {
	f := l.f
	defer f.up.Add(-1)
	for {
		_ = l.ws.SetReadDeadline(time.Now().Add(f.liveness()))
		_, data, err := l.ws.ReadMessage()
		if err != nil {
			if !l.closing.Load() {
				f.dropped.Add(1)
				msg := err.Error()
				f.lastDrop.Store(&msg)
			}
			l.ws.Close()
			return
		}
		at := time.Now()
		m, err := protocol.Decode(data)
		if err != nil {
			f.refusals.Add(1)
			continue
		}
		switch m.Type {
		case protocol.TypeJob:
			f.jobs.Add(1)
			if f.cfg.OnJob != nil {
				f.cfg.OnJob(Job{At: at, BridgeID: l.tok.BridgeID, JobID: m.Job.JobID, ActionAttemptID: m.Job.ActionAttemptID, Kind: m.Job.Kind})
			}
			if f.cfg.Answer {
				l.answer(m.Job)
			}
		case protocol.TypeResultAck:
			f.acks.Add(1)
		case protocol.TypeError:
			f.refusals.Add(1)
		}
	}
}

// answer acks j and sends its result at once: what a bridge with a card
// already on the reader and no card I/O time would send.
func (l *bridgeLink) answer(j *protocol.Job) {
	ack := protocol.New(protocol.TypeAck)
	ack.Ack = &protocol.Ack{JobID: j.JobID}
	if l.send(ack) != nil {
		return // the read loop sees the link die
	}
	sum := sha256.Sum256([]byte(j.JobID))
	card := &protocol.Card{UID: strings.ToUpper(hex.EncodeToString(sum[:7])), Technology: "ntag213"}
	if j.Kind == protocol.JobEncode {
		card.Valid, card.Credential, card.KeyVersion, card.FormatVersion = true, j.Credential, 1, 1
	} else {
		card.Reason = "blank"
	}
	res := protocol.New(protocol.TypeResult)
	res.Result = &protocol.Result{JobID: j.JobID, FinishedAt: time.Now().UTC(), Card: card}
	_ = l.send(res)
}

// pingTick is how often the pinger wakes. Link i of n is due its kth
// ping at start + k·interval + i·interval/n (a link not connected yet
// skips its turn): pings are spread over the interval as independent
// bridges' would be, and a pinger held up (a loaded machine) catches up
// at once instead of stretching every link's interval, which would let
// links die of their own silence.
const pingTick = 100 * time.Millisecond

func (f *Fleet) pinger() {
	t := time.NewTicker(pingTick)
	defer t.Stop()
	n := len(f.links)
	start := time.Now()
	var sent int64 // pings due and sent so far, over all links
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		due := int64(time.Since(start)) * int64(n) / int64(f.cfg.PingInterval)
		for ; sent < due; sent++ {
			l := f.links[sent%int64(n)].Load()
			if l == nil || l.closing.Load() {
				continue
			}
			if err := l.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)); err == nil {
				f.pings.Add(1)
			} else {
				l.ws.Close() // the read loop counts the drop
			}
		}
	}
}

// Stats returns the counters now.
func (f *Fleet) Stats() Stats {
	s := Stats{
		Links: int(f.up.Load()), Dropped: f.dropped.Load(), Jobs: f.jobs.Load(), ResultAcks: f.acks.Load(),
		Refusals: f.refusals.Load(), Pings: f.pings.Load(), Pongs: f.pongs.Load(),
	}
	if p := f.lastDrop.Load(); p != nil {
		s.LastDrop = *p
	}
	return s
}

// BridgeIDs are the fleet's bridges, in the order of Config.Tokens.
func (f *Fleet) BridgeIDs() []string {
	out := make([]string, len(f.cfg.Tokens))
	for i, t := range f.cfg.Tokens {
		out[i] = t.BridgeID
	}
	return out
}

// Close says goodbye on every link (a normal close frame) and waits for
// the links' goroutines.
func (f *Fleet) Close() {
	f.closeOnce.Do(func() {
		close(f.stop)
		for i := range f.links {
			l := f.links[i].Load()
			if l == nil {
				continue
			}
			l.closing.Store(true)
			_ = l.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			l.ws.Close()
		}
	})
	f.wg.Wait()
}

// WriteTokensFile writes tokens to path, readable by its owner only (the
// tokens are secrets).
func WriteTokensFile(path string, tokens []Token) error {
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := WriteTokens(file, tokens); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}
