package chip

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// persistVersion is the version of the Marshal format.
const persistVersion = 1

// state is the persisted form of a card: JSON with hex-encoded memory so
// saved cards stay readable and diffable.
type state struct {
	Version int    `json:"version"`
	Kind    string `json:"kind"`
	UID     hexstr `json:"uid"`
	// Classic
	Blocks []hexstr `json:"blocks,omitempty"`
	// Bricked lists sectors with malformed access bits. It follows from
	// the trailers and is written for readers of the file; Unmarshal
	// checks it agrees.
	Bricked []int `json:"bricked_sectors,omitempty"`
	// Ultralight / NTAG
	Pages        []hexstr `json:"pages,omitempty"`
	Counters     []uint32 `json:"counters,omitempty"`
	AuthFailures int      `json:"auth_failures,omitempty"`
	PwdBlocked   bool     `json:"pwd_blocked,omitempty"`
	CfgLocked    bool     `json:"cfg_locked,omitempty"`
	// DESFire
	DESFire *dfState `json:"desfire,omitempty"`
}

type hexstr []byte

func (h hexstr) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

func (h *hexstr) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	*h = v
	return err
}

// unwrapper is implemented by card wrappers such as WithFaults.
type unwrapper interface{ Unwrap() Card }

// Marshal saves the whole non-volatile state of a card: kind, UID, memory,
// lock and configuration state, counters and AUTHLIM state. Session state
// (authentication, HALT) and reader key slots are not saved.
func Marshal(c Card) ([]byte, error) {
	for {
		w, ok := c.(unwrapper)
		if !ok {
			break
		}
		c = w.Unwrap()
	}
	var s state
	switch c := c.(type) {
	case *Classic:
		s = c.state()
	case *Ultralight:
		s = c.state()
	case *DESFire:
		s = c.state()
	default:
		return nil, fmt.Errorf("chip: cannot marshal %T", c)
	}
	return json.MarshalIndent(s, "", " ")
}

func (c *Classic) state() state {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := state{Version: persistVersion, Kind: c.Kind(), UID: c.uidBytes()}
	for _, b := range c.mem {
		s.Blocks = append(s.Blocks, slices.Clone(b[:]))
	}
	for sec := 0; sec < c.sectors(); sec++ {
		if _, ok := c.sectorAccess(sec); !ok {
			s.Bricked = append(s.Bricked, sec)
		}
	}
	return s
}

func (u *Ultralight) state() state {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := state{Version: persistVersion, Kind: u.spec.kind, UID: u.uidBytes(),
		AuthFailures: u.authFails, PwdBlocked: u.pwdBlocked, CfgLocked: u.cfgLocked}
	for _, p := range u.mem {
		s.Pages = append(s.Pages, slices.Clone(p[:]))
	}
	if u.spec.ntag {
		s.Counters = []uint32{u.counters[0]}
	} else {
		s.Counters = slices.Clone(u.counters[:])
	}
	return s
}

// Unmarshal restores a card saved by Marshal. The card comes back freshly
// activated.
func Unmarshal(data []byte) (Card, error) {
	var s state
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("chip: unmarshal: %w", err)
	}
	if s.Version != persistVersion {
		return nil, fmt.Errorf("chip: unmarshal: unsupported version %d", s.Version)
	}
	switch s.Kind {
	case KindClassic1K, KindClassic4K:
		return unmarshalClassic(&s)
	case KindDESFireEV2, KindDESFireEV3:
		return unmarshalDESFire(&s)
	}
	if m, ok := modelByKind(s.Kind); ok {
		return unmarshalUltralight(m, &s)
	}
	return nil, fmt.Errorf("chip: unmarshal: unknown kind %q", s.Kind)
}

func unmarshalClassic(s *state) (Card, error) {
	if len(s.UID) != 4 && len(s.UID) != 7 {
		return nil, fmt.Errorf("chip: unmarshal: UID of %d bytes", len(s.UID))
	}
	if len(s.Pages) > 0 || len(s.Counters) > 0 || s.AuthFailures != 0 || s.PwdBlocked || s.CfgLocked {
		return nil, errors.New("chip: unmarshal: Ultralight fields in a Classic card")
	}
	c := newClassic(s.Kind == KindClassic4K, s.UID)
	if len(s.Blocks) != len(c.mem) {
		return nil, fmt.Errorf("chip: unmarshal: %d blocks, want %d", len(s.Blocks), len(c.mem))
	}
	for i, b := range s.Blocks {
		if len(b) != 16 {
			return nil, fmt.Errorf("chip: unmarshal: block %d has %d bytes", i, len(b))
		}
		copy(c.mem[i][:], b)
	}
	if string(c.mem[0][:c.uidLen]) != string(s.UID) {
		return nil, errors.New("chip: unmarshal: UID does not match block 0")
	}
	var bricked []int
	for sec := 0; sec < c.sectors(); sec++ {
		if _, ok := c.sectorAccess(sec); !ok {
			bricked = append(bricked, sec)
		}
	}
	if !slices.Equal(bricked, s.Bricked) {
		return nil, fmt.Errorf("chip: unmarshal: bricked sectors %v do not match trailers (%v)", s.Bricked, bricked)
	}
	return c, nil
}

func unmarshalUltralight(m UltralightModel, s *state) (Card, error) {
	if len(s.UID) != 7 {
		return nil, fmt.Errorf("chip: unmarshal: UID of %d bytes", len(s.UID))
	}
	if len(s.Blocks) > 0 || len(s.Bricked) > 0 {
		return nil, errors.New("chip: unmarshal: Classic fields in an Ultralight card")
	}
	u := NewUltralight(m, s.UID)
	if len(s.Pages) != len(u.mem) {
		return nil, fmt.Errorf("chip: unmarshal: %d pages, want %d", len(s.Pages), len(u.mem))
	}
	for i, p := range s.Pages {
		if len(p) != 4 {
			return nil, fmt.Errorf("chip: unmarshal: page %d has %d bytes", i, len(p))
		}
		copy(u.mem[i][:], p)
	}
	if string(u.uidBytes()) != string(s.UID) {
		return nil, errors.New("chip: unmarshal: UID does not match pages 0-1")
	}
	want := 3
	if u.spec.ntag {
		want = 1
	}
	if len(s.Counters) != want {
		return nil, fmt.Errorf("chip: unmarshal: %d counters, want %d", len(s.Counters), want)
	}
	for i, v := range s.Counters {
		if v > maxCounter {
			return nil, fmt.Errorf("chip: unmarshal: counter %d overflows 24 bits", i)
		}
		u.counters[i] = v
	}
	if s.AuthFailures < 0 || s.AuthFailures > 1<<7 {
		return nil, fmt.Errorf("chip: unmarshal: auth_failures %d out of range", s.AuthFailures)
	}
	u.authFails, u.pwdBlocked, u.cfgLocked = s.AuthFailures, s.PwdBlocked, s.CfgLocked
	u.activate()
	return u, nil
}
