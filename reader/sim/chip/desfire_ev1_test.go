package chip

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/internal/ev1"
)

// ev1Auth runs an EV1 authentication (0x0A, 0x1A or 0xAA) through wrapped
// APDUs and returns the reader's session, nil with the card's status
// when refused.
func (p *pcd) ev1Auth(s ev1.Scheme, keyNo byte, key ev1.Key) (*ev1.Session, byte) {
	p.t.Helper()
	p.s = nil
	encB, st := p.raw(byte(s), []byte{keyNo})
	if st != stAdditional {
		return nil, st
	}
	rndA := make([]byte, key.BlockSize())
	_, _ = rand.Read(rndA)
	rd, token, err := ev1.ReaderStep(s, key, encB, rndA)
	if err != nil {
		p.t.Fatal(err)
	}
	out, st := p.raw(stAdditional, token)
	if st != stOK {
		return nil, st
	}
	sess, err := rd.Finish(out)
	if err != nil {
		p.t.Fatalf("card's answer: %v", err)
	}
	return sess, st
}

// cardUID1 sends GetCardUID in an EV1 session and opens its enciphered
// answer.
func (p *pcd) cardUID1(s *ev1.Session) []byte {
	p.t.Helper()
	s.Command(0x51, nil)
	out := p.must(stOK)(p.cmd(0x51, nil))
	uid, err := s.OpenFull(stOK, out, 7)
	if err != nil {
		p.t.Fatalf("GetCardUID answer %X: %v", out, err)
	}
	return uid
}

// A random-UID factory card gives its real UID after the legacy
// Authenticate or AuthenticateISO with the factory all-zero 2K3DES PICC
// master key; a card a distributor converted to an all-zero AES PICC key
// gives it after AuthenticateAES. Nothing on the card changes.
func TestDESFireEV1GetCardUID(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o      DESFireOptions
		scheme ev1.Scheme
		key    ev1.Key
	}{
		{"factory PICC key, legacy Authenticate", DESFireOptions{RandomUID: true}, ev1.Legacy, ev1.Key{}},
		{"factory PICC key, AuthenticateISO", DESFireOptions{RandomUID: true}, ev1.ISO, ev1.Key{}},
		{"AES PICC key, AuthenticateAES", DESFireOptions{RandomUID: true, AESPICCKey: true}, ev1.AES, ev1.Key{AES: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, p := newDF(t, tc.o)
			before := snapshotOf(t, d)
			if uid := d.UID(); bytes.Equal(uid, testUID7) || len(uid) != 4 || uid[0] != 0x08 {
				t.Fatalf("anticollision UID % X", uid)
			}
			if _, st := p.cmd(0x51, nil); st != stAuthError {
				t.Fatalf("GetCardUID without authentication: %02X, want AE", st)
			}
			s, st := p.ev1Auth(tc.scheme, 0, tc.key)
			if st != stOK {
				t.Fatalf("authenticate: %02X", st)
			}
			if uid := p.cardUID1(s); !bytes.Equal(uid, testUID7) {
				t.Fatalf("GetCardUID % X, want % X", uid, testUID7)
			}
			// The session goes on: the IV runs over a plain command and
			// its CMACed answer.
			s.Command(0x64, []byte{0})
			out := p.must(stOK)(p.cmd(0x64, []byte{0}))
			if v, err := s.OpenPlain(stOK, out); err != nil || !bytes.Equal(v, []byte{0}) {
				t.Fatalf("GetKeyVersion in the session: %X %v", out, err)
			}
			if uid := p.cardUID1(s); !bytes.Equal(uid, testUID7) {
				t.Fatalf("second GetCardUID % X", uid)
			}
			if !bytes.Equal(snapshotOf(t, d), before) {
				t.Fatal("reading the UID changed the card")
			}
		})
	}
}

// A wrong key ends the session with 91 AE (AUTHENTICATION_ERROR); a key
// of the other kind is refused the same way.
func TestDESFireEV1WrongKey(t *testing.T) {
	_, p := newDF(t, DESFireOptions{RandomUID: true})
	s, st := p.ev1Auth(ev1.Legacy, 0, ev1.Key{})
	if st != stOK {
		t.Fatalf("authenticate: %02X", st)
	}
	p.cardUID1(s)
	wrong := ev1.Key{Data: [16]byte{0x02, 0, 0, 0, 0, 0, 0, 0, 0x02}}
	if _, st := p.ev1Auth(ev1.Legacy, 0, wrong); st != stAuthError {
		t.Fatalf("wrong key: %02X, want AE", st)
	}
	if _, st := p.cmd(0x51, nil); st != stAuthError {
		t.Fatalf("GetCardUID after a failed authentication: %02X, want AE", st)
	}
	if _, st := p.ev1Auth(ev1.AES, 0, ev1.Key{AES: true}); st != stAuthError {
		t.Fatalf("AuthenticateAES on the 2K3DES PICC key: %02X, want AE", st)
	}
	if _, st := p.ev1Auth(ev1.Legacy, 1, ev1.Key{}); st != stNoSuchKey {
		t.Fatalf("PICC key 1: %02X, want 40", st)
	}
	_, p2 := newDF(t, DESFireOptions{AESPICCKey: true})
	if _, st := p2.ev1Auth(ev1.Legacy, 0, ev1.Key{}); st != stAuthError {
		t.Fatalf("legacy Authenticate on the AES PICC key: %02X, want AE", st)
	}
	if _, st := p2.ev1Auth(ev1.AES, 0, ev1.Key{AES: true, Data: [16]byte{1}}); st != stAuthError {
		t.Fatalf("AuthenticateAES with a wrong key: %02X, want AE", st)
	}
}

// AuthenticateAES on an application key: the EV1 session reads a file
// in CommMode.Full (CRC32 over data and status, running IV) and
// refuses what the model does not take in EV1 messaging.
func TestDESFireEV1ApplicationSession(t *testing.T) {
	_, p := newDF(t, DESFireOptions{})
	setupApp(t, p)
	rec := bytes.Repeat([]byte{0x42}, 20)
	p.must(stOK)(p.sm(0x8D, []byte{0x01, 0, 0, 0, 20, 0, 0}, rec, true, false))
	p.must(stOK)(p.sm(0xC7, nil, nil, false, false))

	p.selectApp(testAID)
	s, st := p.ev1Auth(ev1.AES, 1, ev1.Key{AES: true})
	if st != stOK {
		t.Fatalf("AuthenticateAES key 1: %02X", st)
	}
	hdr := []byte{0x01, 0, 0, 0, 20, 0, 0}
	s.Command(0xAD, hdr)
	out := p.must(stOK)(p.cmd(0xAD, hdr))
	got, err := s.OpenFull(stOK, out, 20)
	if err != nil || !bytes.Equal(got, rec) {
		t.Fatalf("ReadData: %X %v", got, err)
	}
	// A reader whose IV went another way cannot open the next answer.
	s.Command(0xAD, []byte{0x01, 0, 0, 0, 5, 0, 0})
	out = p.must(stOK)(p.cmd(0xAD, hdr))
	if _, err := s.OpenFull(stOK, out, 20); err == nil {
		t.Fatal("an answer opened under another IV")
	}
	// ChangeKey carries enciphered data: not modelled in EV1 messaging.
	if _, st := p.cmd(0xC4, append([]byte{1}, make([]byte, 32)...)); st != stIllegalCommand && st != stPermission {
		t.Fatalf("ChangeKey in an EV1 session: %02X", st)
	}
}

func snapshotOf(t *testing.T, c Card) []byte {
	t.Helper()
	b, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// DeleteApplication needs the application master key's session with the
// application selected (or the PICC master key's at the PICC level),
// frees its memory and ends the session.
func TestDESFireDeleteApplication(t *testing.T) {
	d, p := newDF(t, DESFireOptions{})
	setupApp(t, p)
	free := p.must(stOK)(p.sm(0x6E, nil, nil, false, false))
	p.selectApp([3]byte{})
	if _, st := p.cmd(0xDA, testAID[:]); st != stAuthError {
		t.Fatalf("delete without authentication: %02X, want AE", st)
	}
	p.selectApp(testAID)
	if st := p.auth(true, 1, zeroKey); st != stOK {
		t.Fatalf("auth key 1: %02X", st)
	}
	if _, st := p.sm(0xDA, testAID[:], nil, false, false); st != stPermission {
		t.Fatalf("delete with key 1: %02X, want 9D", st)
	}
	p.selectApp(testAID)
	if st := p.auth(true, 0, zeroKey); st != stOK {
		t.Fatalf("auth key 0: %02X", st)
	}
	p.must(stOK)(p.sm(0xDA, testAID[:], nil, false, false))
	if len(d.Apps()) != 0 || d.Authenticated() {
		t.Fatalf("after delete: apps %X, session %v", d.Apps(), d.Authenticated())
	}
	p.s = nil
	after := p.must(stOK)(p.cmd(0x6E, nil))
	if bytes.Equal(after, free) || after[1] != 0x10 {
		t.Fatalf("free memory %X after delete, %X before", after, free)
	}
}
