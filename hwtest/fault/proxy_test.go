package fault_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"sync"
)

// step is a protocol message seen by the proxy: its type and, for
// progress, its stage.
type step struct {
	Type  string
	Stage string
}

func (s step) String() string {
	if s.Stage != "" {
		return s.Type + ":" + s.Stage
	}
	return s.Type
}

// action is what the proxy does with a message.
type action int

const (
	pass      action = iota
	cutBefore        // drop the message and the link
	cutAfter         // forward the message, then drop the link
)

// proxy is a loopback TCP proxy between the bridge and the cloud that
// reads the websocket frames going through it, so a test can act at a
// given protocol step: before a message is forwarded, hook decides.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns []net.Conn
	// hook is called for each data message before it is forwarded.
	hook func(s step) action
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target}
	go p.accept()
	return p, nil
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) Close() {
	p.ln.Close()
	p.cut()
}

func (p *proxy) setHook(h func(step) action) {
	p.mu.Lock()
	p.hook = h
	p.mu.Unlock()
}

// cut closes every connection through the proxy: the link drops as when
// a network path dies, without a close frame.
func (p *proxy) cut() {
	p.mu.Lock()
	cs := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go p.pipe(u, c)
		go p.pipe(c, u)
	}
}

// pipe copies from src to dst: the HTTP upgrade as is, then frame by
// frame, asking the hook before each data frame.
func (p *proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	r := bufio.NewReader(src)
	var head []byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		b, err := r.ReadByte()
		if err != nil {
			return
		}
		head = append(head, b)
	}
	if _, err := dst.Write(head); err != nil {
		return
	}
	for {
		frame, payload, op, err := readFrame(r)
		if err != nil {
			return
		}
		if op == 1 || op == 2 {
			var m struct {
				Type     string `json:"type"`
				Progress *struct {
					Stage string `json:"stage"`
				} `json:"progress"`
			}
			_ = json.Unmarshal(payload, &m)
			s := step{Type: m.Type}
			if m.Progress != nil {
				s.Stage = m.Progress.Stage
			}
			p.mu.Lock()
			h := p.hook
			p.mu.Unlock()
			act := pass
			if h != nil {
				act = h(s)
			}
			switch act {
			case cutBefore:
				p.cut()
				return
			case cutAfter:
				dst.Write(frame)
				p.cut()
				return
			}
		}
		if _, err := dst.Write(frame); err != nil {
			return
		}
	}
}

// readFrame reads one websocket frame (RFC 6455 §5.2) and returns it raw
// and its payload unmasked.
func readFrame(r *bufio.Reader) (frame, payload []byte, op byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	frame = append(frame, h[:]...)
	op = h[0] & 0x0F
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		frame = append(frame, b[:]...)
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r, b[:]); err != nil {
			return
		}
		frame = append(frame, b[:]...)
		n = binary.BigEndian.Uint64(b[:])
	}
	var mask [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err = io.ReadFull(r, mask[:]); err != nil {
			return
		}
		frame = append(frame, mask[:]...)
	}
	if n > 1<<20 {
		err = io.ErrUnexpectedEOF
		return
	}
	body := make([]byte, n)
	if _, err = io.ReadFull(r, body); err != nil {
		return
	}
	frame = append(frame, body...)
	payload = body
	if masked {
		payload = make([]byte, n)
		for i := range body {
			payload[i] = body[i] ^ mask[i%4]
		}
	}
	return
}
