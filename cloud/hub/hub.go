// Package hub is the cloud's end of the bridge websocket (protocol.Path):
// it authenticates the upgrade, keeps one live link per bridge, reads and
// decodes frames, passes messages to a Handler (package jobs) and writes
// the replies and jobs back through one writer goroutine per link.
//
// A frame that is malformed, too large or of an unknown type is answered
// with a protocol error message and the link stays up. The link is closed
// after an error message only when the bridge cannot go on: an unsupported
// protocol version or a hello from another bridge than the token's.
//
// It must not import api or jobs: the Handler interface is its seam.
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/encoder-bridge/encoder-bridge/cloud/secret"
	"github.com/encoder-bridge/encoder-bridge/cloud/store"
	"github.com/encoder-bridge/encoder-bridge/protocol"
)

// Handler gives meaning to a bridge's messages. Each method returns the
// messages to send back, in order.
type Handler interface {
	// Hello returns the replies to a bridge's hello (welcome, result acks,
	// pending jobs). It may run a database transaction and may call Send:
	// no lock that Send takes is held while it runs, and what is sent to
	// the bridge meanwhile goes to the new link after these replies.
	Hello(ctx context.Context, b store.Bridge, h *protocol.Hello) ([]*protocol.Message, error)
	Message(ctx context.Context, b store.Bridge, m *protocol.Message) ([]*protocol.Message, error)
	Disconnected(ctx context.Context, bridgeID string)
}

// Authenticator checks a bridge token.
type Authenticator interface {
	// Bridge returns the bridge a token belongs to. A token that is
	// unknown, malformed or revoked gives an error with an Unauthorized
	// method reporting true; any other error is a failure of the check.
	Bridge(ctx context.Context, token string) (store.Bridge, error)
}

// IsUnauthorized reports whether err says the secret was refused (rather
// than that checking it failed).
func IsUnauthorized(err error) bool {
	var u interface{ Unauthorized() bool }
	return errors.As(err, &u) && u.Unauthorized()
}

// Defaults of Config.
const (
	DefaultPingInterval = 15 * time.Second
	DefaultPongWait     = 45 * time.Second
	DefaultWriteWait    = 10 * time.Second
	DefaultHelloWait    = 10 * time.Second
	DefaultSendQueue    = 4096
	// DefaultMaxLinks bounds the links one bridge token may hold open at
	// once. A bridge needs one; a reconnect briefly makes two (the newer
	// replaces the older at its hello).
	DefaultMaxLinks = 4
	// DefaultMaxEncoders bounds the encoders one bridge may register: a
	// hello lists at most this many (the rest are refused), so it stays a
	// short transaction.
	DefaultMaxEncoders = 64
	// HardReadLimit closes a link that sends a frame this large. Frames
	// between protocol.MaxMessageSize and this are read to the end without
	// being kept and answered with message_too_large.
	HardReadLimit = 16 * protocol.MaxMessageSize
)

// Log field keys.
const (
	FieldBridgeID = "bridge_id"
	FieldRemote   = "remote"
)

// Config configures a Hub.
type Config struct {
	Handler Handler
	Auth    Authenticator
	Log     *zap.Logger
	// Zero durations take the defaults above.
	PingInterval time.Duration
	PongWait     time.Duration
	WriteWait    time.Duration
	HelloWait    time.Duration
	// SendQueue is how many messages may wait for a slow link before it
	// is closed (default 4096).
	SendQueue int
	// MaxLinks and MaxEncoders are per bridge; zero takes the defaults.
	MaxLinks    int
	MaxEncoders int
}

// Hub holds the bridges' links.
type Hub struct {
	cfg      Config
	log      *zap.Logger
	upgrader websocket.Upgrader
	ctx      context.Context
	cancel   context.CancelFunc

	mu        sync.Mutex
	slots     map[string]*slot // by bridge id
	links     map[*link]struct{}
	perBridge map[string]int // open links by bridge id
	closed    bool
	wg        sync.WaitGroup
	count     atomic.Int64
}

// slot is a bridge's place in the hub: its current link. A hello (read
// pending jobs, queue them, become current) and Send are ordered so that a
// job stored during a hello is either in the hello's offer or sent to the
// new link after it: Send during a hello holds the message back for the
// new link. No lock Send takes is held while the handler's Hello runs its
// transaction, so a slow database never stalls Send, and Hello may call it.
type slot struct {
	hello sync.Mutex // one hello per bridge at a time
	mu    sync.Mutex // guards accepting and held, and orders Send against the swap
	cur   atomic.Pointer[link]
	// accepting is set while a hello runs; held are the messages Send
	// queued meanwhile.
	accepting bool
	held      [][]byte
}

// New makes a Hub.
func New(cfg Config) *Hub {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PongWait <= 0 {
		cfg.PongWait = DefaultPongWait
	}
	if cfg.WriteWait <= 0 {
		cfg.WriteWait = DefaultWriteWait
	}
	if cfg.HelloWait <= 0 {
		cfg.HelloWait = DefaultHelloWait
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = DefaultSendQueue
	}
	if cfg.MaxLinks <= 0 {
		cfg.MaxLinks = DefaultMaxLinks
	}
	if cfg.MaxEncoders <= 0 {
		cfg.MaxEncoders = DefaultMaxEncoders
	}
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		cfg: cfg,
		log: log,
		upgrader: websocket.Upgrader{
			// Zero read buffer: reuse the HTTP server's. The write buffer
			// comes from a pool and is held only while writing, so an
			// idle link keeps no write buffer.
			WriteBufferPool:  &sync.Pool{},
			HandshakeTimeout: 10 * time.Second,
		},
		ctx:       ctx,
		cancel:    cancel,
		slots:     map[string]*slot{},
		links:     map[*link]struct{}{},
		perBridge: map[string]int{},
	}
}

// Online reports whether the bridge has a link that said hello. It never
// blocks.
func (h *Hub) Online(bridgeID string) bool {
	h.mu.Lock()
	s := h.slots[bridgeID]
	h.mu.Unlock()
	return s != nil && s.cur.Load() != nil
}

// Send queues m on the bridge's current link. It reports false if the
// bridge has no link or m could not be queued.
func (h *Hub) Send(bridgeID string, m *protocol.Message) bool {
	b, err := protocol.Encode(m)
	if err != nil {
		h.log.Error("outgoing message not encoded", zap.String("type", string(m.Type)), zap.Error(err))
		return false
	}
	return h.SendFrame(bridgeID, b)
}

// SendFrame is Send for a message already encoded (protocol.Encode,
// protocol.JobFrame), so that a job is marshalled once, when it is made.
func (h *Hub) SendFrame(bridgeID string, frame []byte) bool {
	h.mu.Lock()
	s := h.slots[bridgeID]
	h.mu.Unlock()
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.accepting {
		if len(s.held) >= h.cfg.SendQueue {
			return false
		}
		s.held = append(s.held, frame)
		return true
	}
	l := s.cur.Load()
	return l != nil && l.push(outItem{data: frame})
}

// Disconnect closes every link of the bridge, those that have not said
// hello yet included.
func (h *Hub) Disconnect(bridgeID, reason string) {
	h.mu.Lock()
	var links []*link
	for l := range h.links {
		if l.bridge.ID == bridgeID {
			links = append(links, l)
		}
	}
	h.mu.Unlock()
	for _, l := range links {
		l.closeWith(websocket.ClosePolicyViolation, reason)
	}
}

// BridgeIDs lists the bridges with a link open (said hello or not).
func (h *Hub) BridgeIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]string, 0, len(h.perBridge))
	for id := range h.perBridge {
		ids = append(ids, id)
	}
	return ids
}

// Holds reports whether the bridge has a link open (said hello or not).
func (h *Hub) Holds(bridgeID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.perBridge[bridgeID] > 0
}

// Links reports how many websocket links are open (said hello or not).
func (h *Hub) Links() int { return int(h.count.Load()) }

func (h *Hub) slot(bridgeID string) *slot {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.slots[bridgeID]
	if s == nil {
		s = &slot{}
		h.slots[bridgeID] = s
	}
	return s
}

// Close closes every link and waits for their goroutines.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	links := make([]*link, 0, len(h.links))
	for l := range h.links {
		links = append(links, l)
	}
	h.mu.Unlock()
	for _, l := range links {
		l.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
	h.cancel()
	h.wg.Wait()
}

// apiError is the 401 body, in the HTTP API's error shape.
type apiError struct {
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// unauthorized answers a missing, malformed, unknown or revoked token, the
// same way in every case, and closes the connection without reading any
// body the request promised.
func unauthorized(w http.ResponseWriter) {
	var e apiError
	e.Error.Type, e.Error.Message = "unauthorized", "missing, invalid or revoked bridge token: send Authorization: Bearer <token>"
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("WWW-Authenticate", `Bearer realm="encoder-bridge"`)
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(e)
}

// ServeHTTP authenticates and upgrades a bridge's websocket, then serves
// the link until it closes.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := secret.Bearer(r.Header.Get("Authorization"))
	if !ok {
		unauthorized(w)
		return
	}
	b, err := h.cfg.Auth.Bridge(r.Context(), token)
	if err != nil {
		if !IsUnauthorized(err) {
			// Not the bridge's fault: a 401 would stop it for good.
			h.log.Error("bridge token check failed", zap.String(FieldRemote, r.RemoteAddr), zap.Error(err))
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
		// Never log the token; the remote address is enough to follow up.
		h.log.Info("bridge refused: bad or revoked token", zap.String(FieldRemote, r.RemoteAddr))
		unauthorized(w)
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if h.perBridge[b.ID] >= h.cfg.MaxLinks {
		h.mu.Unlock()
		// Each link may carry frames of up to 256 KiB before its hello:
		// one token must not hold any number of them. The bridge retries
		// a 429 with backoff.
		h.log.Warn("bridge refused: too many links open with its token", zap.String(FieldBridgeID, b.ID), zap.String(FieldRemote, r.RemoteAddr))
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many connections with this bridge token", http.StatusTooManyRequests)
		return
	}
	h.perBridge[b.ID]++ // given back by forget, or below if the upgrade fails
	h.wg.Add(2)         // the link's reader and writer
	h.mu.Unlock()

	ws, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		h.mu.Lock()
		h.dropBridgeLinkLocked(b.ID)
		h.mu.Unlock()
		h.wg.Add(-2)
		return // Upgrade has answered the request
	}
	l := h.newLink(ws, b)
	h.log.Info("bridge connected", zap.String(FieldBridgeID, b.ID), zap.String(FieldRemote, r.RemoteAddr))
	go func() {
		defer h.wg.Done()
		l.writeLoop()
	}()
	// The read loop gets a fresh goroutine and this one (whose stack grew
	// parsing the request and checking the token) ends: an idle link then
	// holds two small stacks.
	go func() {
		defer h.wg.Done()
		l.readLoop()
	}()
}

func (h *Hub) newLink(ws *websocket.Conn, b store.Bridge) *link {
	l := &link{
		hub:    h,
		ws:     ws,
		bridge: b,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		log:    h.log.With(zap.String(FieldBridgeID, b.ID)),
	}
	h.mu.Lock()
	h.links[l] = struct{}{}
	closed := h.closed
	h.mu.Unlock()
	h.count.Add(1)
	if closed {
		// Close ran while this link was being upgraded and did not see it.
		l.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
	return l
}

func (h *Hub) dropBridgeLinkLocked(bridgeID string) {
	if h.perBridge[bridgeID]--; h.perBridge[bridgeID] <= 0 {
		delete(h.perBridge, bridgeID)
	}
}

// forget removes a finished link; if it was its bridge's current link, the
// bridge is offline now.
func (h *Hub) forget(l *link) {
	h.mu.Lock()
	_, present := h.links[l]
	delete(h.links, l)
	if present {
		h.dropBridgeLinkLocked(l.bridge.ID)
	}
	s := h.slots[l.bridge.ID]
	h.mu.Unlock()
	if !present {
		return
	}
	h.count.Add(-1)
	if s == nil {
		return
	}
	s.mu.Lock()
	wasCurrent := s.cur.CompareAndSwap(l, nil)
	s.mu.Unlock()
	if wasCurrent {
		h.cfg.Handler.Disconnected(h.ctx, l.bridge.ID)
		h.log.Info("bridge disconnected", zap.String(FieldBridgeID, l.bridge.ID))
	}
}

// accept makes l its bridge's current link after a valid hello, replacing
// (and closing) the previous one, and queues the handler's replies
// (welcome, result acks, pending jobs) ahead of anything else.
func (h *Hub) accept(l *link, hello *protocol.Hello) error {
	s := h.slot(l.bridge.ID)
	s.hello.Lock()
	defer s.hello.Unlock()
	s.mu.Lock()
	s.accepting = true
	s.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			// The hello failed or panicked: what was sent meanwhile goes
			// where it would have gone without this hello.
			s.mu.Lock()
			held := s.held
			s.accepting, s.held = false, nil
			if cur := s.cur.Load(); cur != nil {
				for _, f := range held {
					cur.push(outItem{data: f})
				}
			}
			s.mu.Unlock()
		}
	}()
	msgs, err := h.cfg.Handler.Hello(h.ctx, l.bridge, hello)
	if err != nil {
		return err
	}
	ok = true
	s.mu.Lock()
	held := s.held
	s.accepting, s.held = false, nil
	// Current before the welcome is queued: a bridge acting on its welcome
	// must find itself online. Send holds s.mu, so no job can be queued
	// ahead of these replies.
	old := s.cur.Swap(l)
	for _, m := range msgs {
		l.enqueue(m)
	}
	for _, f := range held {
		l.push(outItem{data: f})
	}
	s.mu.Unlock()
	if old != nil && old != l {
		h.log.Info("bridge link replaced by a newer one", zap.String(FieldBridgeID, l.bridge.ID))
		old.closeWith(websocket.ClosePolicyViolation, "replaced by a newer connection from the same bridge")
	}
	return nil
}

// outItem is a frame to write, or the instruction to close.
type outItem struct {
	data   []byte
	close  bool
	code   int
	reason string
}

// link is one websocket connection of a bridge.
type link struct {
	hub    *Hub
	ws     *websocket.Conn // nil for links made by HandleFrameForTest
	bridge store.Bridge
	log    *zap.Logger

	// The send queue: a slice, not a buffered channel, so an idle link
	// holds no queue memory and a hello with many replies never overflows
	// a fixed buffer. wake tells the writer there is something to send.
	mu     sync.Mutex
	queue  []outItem
	wake   chan struct{}
	done   chan struct{}
	once   sync.Once
	closed bool // a close item is queued

	// helloDone and encoders (the protocol ids registered on this link)
	// are touched only by the read loop.
	helloDone bool
	encoders  map[protocol.EncoderID]bool
}

// push queues an item; false if the link is closing or too slow.
func (l *link) push(it outItem) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	select {
	case <-l.done:
		l.mu.Unlock()
		return false
	default:
	}
	if len(l.queue) >= l.hub.cfg.SendQueue {
		l.mu.Unlock()
		l.log.Warn("bridge link too slow: send queue full, closing it")
		l.shutdown()
		return false
	}
	l.queue = append(l.queue, it)
	l.closed = it.close
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

// take empties the queue.
func (l *link) take() []outItem {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.queue
	l.queue = nil
	return q
}

// enqueue queues m; a link whose queue is full is too slow and is closed.
func (l *link) enqueue(m *protocol.Message) bool {
	b, err := protocol.Encode(m)
	if err != nil {
		l.log.Error("outgoing message not encoded", zap.String("type", string(m.Type)), zap.Error(err))
		return false
	}
	return l.push(outItem{data: b})
}

// closeWith queues a close frame after what is already queued.
func (l *link) closeWith(code int, reason string) {
	l.push(outItem{close: true, code: code, reason: reason})
}

// shutdown stops the link at once.
func (l *link) shutdown() {
	l.once.Do(func() {
		close(l.done)
		if l.ws != nil {
			l.ws.Close()
		}
	})
}

func (l *link) writeLoop() {
	cfg := l.hub.cfg
	ping := time.NewTicker(cfg.PingInterval)
	defer ping.Stop()
	defer l.shutdown()
	for {
		select {
		case <-l.done:
			return
		case <-l.wake:
			for _, it := range l.take() {
				_ = l.ws.SetWriteDeadline(time.Now().Add(cfg.WriteWait))
				if it.close {
					_ = l.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(it.code, it.reason))
					return
				}
				if err := l.ws.WriteMessage(websocket.TextMessage, it.data); err != nil {
					l.log.Info("write to bridge failed", zap.Error(err))
					return
				}
			}
		case <-ping.C:
			if err := l.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(cfg.WriteWait)); err != nil {
				l.log.Info("ping to bridge failed", zap.Error(err))
				return
			}
		}
	}
}

func (l *link) readLoop() {
	defer l.hub.forget(l)
	defer l.shutdown()
	cfg := l.hub.cfg
	l.ws.SetReadLimit(HardReadLimit)
	_ = l.ws.SetReadDeadline(time.Now().Add(cfg.HelloWait))
	l.ws.SetPongHandler(func(string) error {
		// Before the hello the deadline is absolute: pongs nobody asked
		// for must not keep a link open that never says hello.
		if !l.helloDone {
			return nil
		}
		return l.ws.SetReadDeadline(time.Now().Add(cfg.PongWait))
	})
	for {
		typ, r, err := l.ws.NextReader()
		if err != nil {
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) && !errors.Is(err, io.EOF) {
				l.log.Info("bridge link read ended", zap.Error(err))
			}
			return
		}
		data, err := io.ReadAll(io.LimitReader(r, protocol.MaxMessageSize+1))
		if err == nil && len(data) > protocol.MaxMessageSize {
			// Drain the rest of the frame without keeping it.
			_, err = io.Copy(io.Discard, r)
		}
		if err != nil {
			l.log.Info("bridge link read failed", zap.Error(err))
			return
		}
		if l.helloDone {
			_ = l.ws.SetReadDeadline(time.Now().Add(cfg.PongWait))
		}
		if typ != websocket.TextMessage {
			// docs/protocol.md: every message is a text frame.
			l.reply(protocol.CodeMalformed, "", "binary frames are refused: send each message as a text frame")
			continue
		}
		l.process(data)
	}
}

// process handles a frame on a goroutine of its own and waits for it: the
// database work of a message grows a goroutine's stack a lot, and this way
// that stack is freed at once instead of staying with the idle read loop
// of every link. A panic is contained: logged and answered, never fatal.
func (l *link) process(data []byte) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				l.log.Error("panic while handling a bridge message", zap.Any("panic", p), zap.Stack("stack"))
				l.reply(protocol.CodeInternal, "", "the cloud failed on this message")
			}
		}()
		l.handleFrame(data)
	}()
	<-done
}

// handleFrame decodes one frame and acts on it. It never panics on input.
func (l *link) handleFrame(data []byte) {
	h := l.hub
	m, err := protocol.Decode(data)
	if err != nil {
		code := protocol.CodeOf(err)
		l.reply(code, "", clip(err.Error()))
		if code == protocol.CodeUnsupported && !l.helloDone {
			l.closeWith(websocket.CloseProtocolError, "unsupported protocol version")
		}
		return
	}
	if !l.helloDone {
		if m.Type != protocol.TypeHello {
			l.reply(protocol.CodeUnexpected, "", "the first message must be hello, not "+string(m.Type))
			return
		}
		if m.Hello.ProtocolVersion != protocol.Version {
			l.reply(protocol.CodeUnsupported, "", "this cloud speaks protocol version 1")
			l.closeWith(websocket.CloseProtocolError, "unsupported protocol version")
			return
		}
		if m.Hello.BridgeID != l.bridge.ID {
			l.log.Warn("hello refused: bridge id is not the token's bridge")
			l.reply(protocol.CodeUnauthenticated, "", "this token belongs to another bridge")
			l.closeWith(websocket.ClosePolicyViolation, "bridge id does not match the token")
			return
		}
		listed := len(m.Hello.Encoders)
		if listed > h.cfg.MaxEncoders {
			m.Hello.Encoders = m.Hello.Encoders[:h.cfg.MaxEncoders]
		}
		if err := h.accept(l, m.Hello); err != nil {
			l.log.Error("hello failed", zap.Error(err))
			l.reply(protocol.CodeInternal, "", "the cloud could not take the hello; reconnect later")
			l.closeWith(websocket.CloseInternalServerErr, "internal error")
			return
		}
		l.helloDone = true
		l.encoders = make(map[protocol.EncoderID]bool, len(m.Hello.Encoders))
		for _, e := range m.Hello.Encoders {
			l.encoders[e.ID] = true
		}
		if listed > h.cfg.MaxEncoders {
			l.log.Warn("hello listed too many encoders: the first ones registered", zap.Int("listed", listed), zap.Int("registered", h.cfg.MaxEncoders))
			l.reply(protocol.CodeMalformed, "", fmt.Sprintf("a bridge may have at most %d encoders: the first %d of the %d listed are registered", h.cfg.MaxEncoders, h.cfg.MaxEncoders, listed))
		}
		if l.ws != nil {
			_ = l.ws.SetReadDeadline(time.Now().Add(h.cfg.PongWait))
		}
		return
	}
	switch m.Type {
	case protocol.TypeEncoderAdded:
		if !l.encoders[m.Encoder.ID] && len(l.encoders) >= h.cfg.MaxEncoders {
			l.reply(protocol.CodeMalformed, "", fmt.Sprintf("a bridge may have at most %d encoders: %q is not registered", h.cfg.MaxEncoders, clip(string(m.Encoder.ID))))
			return
		}
	case protocol.TypeEncoderRemoved:
		defer delete(l.encoders, m.EncoderID)
	}
	replies, err := h.cfg.Handler.Message(h.ctx, l.bridge, m)
	if err != nil {
		l.log.Error("message handling failed", zap.String("type", string(m.Type)), zap.Error(err))
		l.reply(protocol.CodeInternal, m.JobID(), "the cloud could not process the message; send it again later")
		return
	}
	for _, r := range replies {
		l.enqueue(r)
	}
	if m.Type == protocol.TypeEncoderAdded && l.encoders != nil {
		l.encoders[m.Encoder.ID] = true
	}
}

func (l *link) reply(code protocol.ErrorCode, jobID, msg string) {
	m := protocol.New(protocol.TypeError)
	m.Error = &protocol.Error{Code: code, Message: msg, JobID: jobID}
	l.enqueue(m)
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// HandleFrameForTest runs one frame through the same path as a frame read
// from a live link of bridge b (helloDone: the link has said hello) and
// returns the messages that would be sent and whether the link would be
// closed. For fuzzing and tests.
func (h *Hub) HandleFrameForTest(b store.Bridge, helloDone bool, frame []byte) (sent []*protocol.Message, closed bool) {
	l := &link{hub: h, bridge: b, wake: make(chan struct{}, 1), done: make(chan struct{}), log: h.log, helloDone: helloDone}
	l.handleFrame(frame)
	// A hello made l its bridge's current link; detach it again.
	if s := h.slotIfAny(b.ID); s != nil {
		s.mu.Lock()
		s.cur.CompareAndSwap(l, nil)
		s.mu.Unlock()
	}
	for _, it := range l.take() {
		if it.close {
			closed = true
			continue
		}
		m, err := protocol.Decode(it.data)
		if err != nil {
			panic("hub sent a message it cannot decode: " + err.Error())
		}
		sent = append(sent, m)
	}
	select {
	case <-l.done:
		closed = true
	default:
	}
	return sent, closed
}

func (h *Hub) slotIfAny(bridgeID string) *slot {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.slots[bridgeID]
}
