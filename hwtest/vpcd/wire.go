package vpcd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Control codes: 1-byte messages from vpcd.
const (
	ctrlOff   = 0x00
	ctrlOn    = 0x01
	ctrlReset = 0x02
	ctrlATR   = 0x04
)

// maxMsg is the largest body the 2-byte length can frame.
const maxMsg = 0xFFFF

var (
	// ErrClosed: vpcd closed the connection (pcscd stopped or restarted, or
	// it dropped the card).
	ErrClosed = errors.New("vpcd: connection closed by the reader driver")
	// ErrProtocol: vpcd sent something the protocol does not allow, or the
	// card gave an answer it cannot frame.
	ErrProtocol = errors.New("vpcd: protocol error")
)

// readMsg reads one length-prefixed message.
func readMsg(r *bufio.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: inside a length header", ErrClosed)
		}
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n == 0 {
		// vpcd never sends an empty APDU: it skips the send instead.
		return nil, fmt.Errorf("%w: empty message", ErrProtocol)
	}
	msg := make([]byte, n)
	if got, err := io.ReadFull(r, msg); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: message cut off after %d of %d bytes", ErrClosed, got, n)
		}
		return nil, err
	}
	return msg, nil
}

// writeMsg sends length and body in one write: two writes cost a delayed
// ACK round trip (~40 ms) on the peer with Nagle on its side.
func writeMsg(c net.Conn, body []byte) error {
	if len(body) > maxMsg {
		return fmt.Errorf("%w: answer of %d bytes exceeds the %d-byte frame", ErrProtocol, len(body), maxMsg)
	}
	buf := make([]byte, 2+len(body))
	binary.BigEndian.PutUint16(buf, uint16(len(body)))
	copy(buf[2:], body)
	_, err := c.Write(buf)
	return err
}

// ackingReader sets TCP_QUICKACK after every read. Linux clears the flag on
// its own, and vpcd writes the length and the body separately: without an
// immediate ACK of the length, Nagle holds vpcd's body back until our
// delayed ACK fires.
type ackingReader struct {
	c  net.Conn
	on bool
}

func (r ackingReader) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	if r.on && n > 0 {
		quickAck(r.c)
	}
	return n, err
}
