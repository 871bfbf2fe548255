package pcsc

import (
	"bytes"
	"slices"
	"sync"
	"time"

	"github.com/ebfe/scard"
)

// fakeService stands in for pcscd behind scardContext: it can be down,
// restart (every context and card handle from before then fails with
// SCARD_E_INVALID_HANDLE, as after a pcscd restart), and have readers and
// cards come and go. GetStatusChange and SCardCancel behave like
// pcsc-lite's: a reader unknown at the start of a call is an error, one that
// leaves during it is UNKNOWN|UNAVAILABLE, and Cancel only reaches a call
// already waiting.
type fakeService struct {
	mu             sync.Mutex
	up             bool
	epoch          int
	readers        []string
	cards          map[string]int // reader → event counter; odd means a card is present
	owner          map[string]*fakeCard
	pnpUnsupported bool
	changed        chan struct{} // closed and replaced on every change
	established    int
	released       int
	transmit       func(apdu []byte) []byte
	resets         int
	serials        map[string][]byte // SCARD_ATTR_VENDOR_IFD_SERIAL_NO per reader; absent: unsupported
	inWait         int               // calls inside GetStatusChange's wait
	// observed is closed and replaced when inWait or released changes,
	// for waitUntil.
	observed chan struct{}
	// refuse is pcscd 2.x whose polkit check says no to access_pcsc: it
	// closes the client's socket unanswered, which pcsc-lite's client
	// reports as SCARD_W_SECURITY_VIOLATION, or as SCARD_E_NO_SERVICE
	// when the close wins the race with its first write (raceEvery).
	refuse    bool
	raceEvery int
	attempts  int
	// refuseCard is polkit saying no to access_card for a reader: Connect
	// answers SCARD_W_SECURITY_VIOLATION on a live context.
	refuseCard map[string]bool
	// stale is what a context from before a restart answers: WinSCard
	// says INVALID_HANDLE; pcsc-lite's client, whose socket to the old
	// pcscd is gone, says NO_SERVICE or F_COMM_ERROR.
	stale scard.Error
}

var fakeATR = []byte{0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x03, 0x06, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x6A}

func newFakeService(up bool, readers ...string) *fakeService {
	return &fakeService{
		stale:    scard.ErrInvalidHandle,
		up:       up,
		readers:  readers,
		cards:    map[string]int{},
		owner:    map[string]*fakeCard{},
		changed:  make(chan struct{}),
		observed: make(chan struct{}),
	}
}

func (s *fakeService) observeLocked() {
	close(s.observed)
	s.observed = make(chan struct{})
}

// waitUntil waits, up to bound, until cond (called with s.mu held) holds,
// and reports whether it did.
func (s *fakeService) waitUntil(cond func() bool) bool {
	timeout := time.After(bound)
	for {
		s.mu.Lock()
		ok, observed := cond(), s.observed
		s.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-observed:
		case <-timeout:
			return false
		}
	}
}

func (s *fakeService) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *fakeService) establish() (scardContext, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		return nil, scard.ErrNoService
	}
	if s.refuse {
		s.attempts++
		s.observeLocked()
		if s.raceEvery > 0 && s.attempts%s.raceEvery == 0 {
			return nil, scard.ErrNoService
		}
		return nil, scard.ErrSecurityViolation
	}
	s.established++
	return &fakeContext{s: s, epoch: s.epoch}, nil
}

// stop takes the service down; start brings it back as a new instance.
func (s *fakeService) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up = false
	s.notifyLocked()
}

func (s *fakeService) start(readers ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up = true
	s.epoch++
	s.readers = readers
	s.owner = map[string]*fakeCard{}
	s.notifyLocked()
}

func (s *fakeService) setReaders(readers ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readers = readers
	s.notifyLocked()
}

func (s *fakeService) setCard(name string, present bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if (s.cards[name]%2 == 1) != present {
		s.cards[name]++
		delete(s.owner, name)
		s.notifyLocked()
	}
}

// setRefuse makes polkit refuse access_pcsc, or stop refusing it.
func (s *fakeService) setRefuse(refuse bool, raceEvery int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse, s.raceEvery = refuse, raceEvery
}

// setRefuseCard makes polkit refuse access_card for name, or stop.
func (s *fakeService) setRefuseCard(name string, refuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuseCard == nil {
		s.refuseCard = map[string]bool{}
	}
	s.refuseCard[name] = refuse
}

func (s *fakeService) counts() (established, released int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.established, s.released
}

func (s *fakeService) hasReaderLocked(name string) bool {
	return slices.Contains(s.readers, name)
}

type fakeContext struct {
	s        *fakeService
	epoch    int
	released bool
	waiting  chan struct{} // non-nil while inside GetStatusChange
}

// aliveLocked is what pcsc-lite answers on a context after the daemon
// went away or restarted.
func (f *fakeContext) aliveLocked() error {
	switch {
	case f.released:
		return scard.ErrInvalidHandle
	case f.epoch != f.s.epoch && f.s.up:
		return f.s.stale
	case !f.s.up:
		return scard.ErrNoService
	}
	return nil
}

func (f *fakeContext) ListReaders() ([]string, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if err := f.aliveLocked(); err != nil {
		return nil, err
	}
	if len(f.s.readers) == 0 {
		return nil, scard.ErrNoReadersAvailable
	}
	return slices.Clone(f.s.readers), nil
}

func (f *fakeContext) GetStatusChange(states []scard.ReaderState, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	s := f.s
	s.mu.Lock()
	for i := range states {
		rs := &states[i]
		if rs.Reader == pnpReader {
			if s.pnpUnsupported {
				s.mu.Unlock()
				return scard.ErrUnknownReader
			}
		} else if !s.hasReaderLocked(rs.Reader) {
			s.mu.Unlock()
			return scard.ErrUnknownReader
		}
	}
	cancel := make(chan struct{})
	f.waiting = cancel
	s.inWait++
	s.observeLocked()
	defer func() {
		s.mu.Lock()
		f.waiting = nil
		s.inWait--
		s.observeLocked()
		s.mu.Unlock()
	}()
	for {
		if err := f.aliveLocked(); err != nil {
			s.mu.Unlock()
			return err
		}
		wake := false
		for i := range states {
			rs := &states[i]
			var ev scard.StateFlag
			switch {
			case rs.Reader == pnpReader:
				// Windows' form: the reader count in the upper half.
				ev = scard.StateFlag(len(s.readers) << 16)
			case !s.hasReaderLocked(rs.Reader):
				ev = scard.StateUnknown | scard.StateUnavailable
			default:
				n := s.cards[rs.Reader]
				ev = scard.StateFlag(n<<16) | scard.StateEmpty
				if n%2 == 1 {
					ev = scard.StateFlag(n<<16) | scard.StatePresent
				}
			}
			if rs.CurrentState == scard.StateUnaware || ev != rs.CurrentState {
				ev |= scard.StateChanged
				wake = true
			}
			rs.EventState = ev
		}
		if wake {
			s.mu.Unlock()
			return nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-cancel:
			return scard.ErrCancelled
		case <-deadline.C:
			return scard.ErrTimeout
		}
		s.mu.Lock()
	}
}

func (f *fakeContext) Connect(name string, mode scard.ShareMode, proto scard.Protocol) (scardCard, error) {
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := f.aliveLocked(); err != nil {
		return nil, err
	}
	if !s.hasReaderLocked(name) {
		return nil, scard.ErrUnknownReader
	}
	if s.refuseCard[name] {
		return nil, scard.ErrSecurityViolation
	}
	if mode == scard.ShareDirect {
		// A direct connection talks to the reader: no card needed, and
		// nobody's exclusive connection is disturbed.
		return &fakeCard{ctx: f, name: name, direct: true}, nil
	}
	if s.cards[name]%2 == 0 {
		return nil, scard.ErrNoSmartcard
	}
	if s.owner[name] != nil {
		return nil, scard.ErrSharingViolation
	}
	k := &fakeCard{ctx: f, name: name, insertion: s.cards[name]}
	s.owner[name] = k
	return k, nil
}

func (f *fakeContext) Cancel() error {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if f.released {
		return scard.ErrInvalidHandle
	}
	if f.waiting != nil {
		close(f.waiting)
		f.waiting = nil
	}
	return nil
}

func (f *fakeContext) Release() error {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if f.released {
		return scard.ErrInvalidHandle
	}
	f.released = true
	f.s.released++
	f.s.observeLocked()
	return nil
}

type fakeCard struct {
	ctx          *fakeContext
	name         string
	insertion    int
	disconnected bool
	direct       bool
}

func (k *fakeCard) GetAttrib(id scard.Attrib) ([]byte, error) {
	k.ctx.s.mu.Lock()
	defer k.ctx.s.mu.Unlock()
	if k.disconnected {
		return nil, scard.ErrInvalidHandle
	}
	if err := k.ctx.aliveLocked(); err != nil {
		return nil, err
	}
	v, ok := k.ctx.s.serials[k.name]
	if id != scard.AttrVendorIfdSerialNo || !ok {
		return nil, scard.ErrUnsupportedFeature
	}
	return bytes.Clone(v), nil
}

func (k *fakeCard) checkLocked() error {
	if k.disconnected {
		return scard.ErrInvalidHandle
	}
	if err := k.ctx.aliveLocked(); err != nil {
		return err
	}
	if k.ctx.s.cards[k.name] != k.insertion {
		return scard.ErrRemovedCard
	}
	return nil
}

func (k *fakeCard) Status() (*scard.CardStatus, error) {
	k.ctx.s.mu.Lock()
	defer k.ctx.s.mu.Unlock()
	if err := k.checkLocked(); err != nil {
		return nil, err
	}
	return &scard.CardStatus{Reader: k.name, State: scard.Present, ActiveProtocol: scard.ProtocolT1, Atr: bytes.Clone(fakeATR)}, nil
}

func (k *fakeCard) ActiveProtocol() scard.Protocol { return scard.ProtocolT1 }

func (k *fakeCard) Transmit(cmd []byte) ([]byte, error) {
	s := k.ctx.s
	s.mu.Lock()
	if err := k.checkLocked(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	fn := s.transmit
	s.mu.Unlock()
	if fn != nil {
		return fn(cmd), nil
	}
	return []byte{0x90, 0x00}, nil
}

func (k *fakeCard) Reconnect(mode scard.ShareMode, proto scard.Protocol, disp scard.Disposition) error {
	k.ctx.s.mu.Lock()
	defer k.ctx.s.mu.Unlock()
	if err := k.checkLocked(); err != nil {
		return err
	}
	k.ctx.s.resets++
	return nil
}

func (k *fakeCard) Disconnect(disp scard.Disposition) error {
	s := k.ctx.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.disconnected {
		return scard.ErrInvalidHandle
	}
	k.disconnected = true
	if err := k.ctx.aliveLocked(); err != nil {
		return err
	}
	if s.owner[k.name] == k {
		delete(s.owner, k.name)
	}
	return nil
}
