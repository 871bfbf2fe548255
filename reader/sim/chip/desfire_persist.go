package chip

import (
	"errors"
	"fmt"
	"slices"
)

// dfState is the persisted form of a DESFire card's non-volatile state.
type dfState struct {
	Size      int          `json:"size"`
	RandomUID bool         `json:"random_uid,omitempty"`
	PICC      dfAppState   `json:"picc"`
	Apps      []dfAppState `json:"apps,omitempty"`
}

type dfAppState struct {
	AID      hexstr        `json:"aid,omitempty"`
	Settings byte          `json:"key_settings"`
	KeyType  byte          `json:"key_type"`
	Keys     []hexstr      `json:"keys"`
	Versions hexstr        `json:"key_versions"`
	ISOFID   hexstr        `json:"iso_fid,omitempty"`
	DFName   hexstr        `json:"df_name,omitempty"`
	Files    []dfFileState `json:"files,omitempty"`
}

type dfFileState struct {
	No     byte   `json:"no"`
	Type   byte   `json:"type"`
	Comm   byte   `json:"comm"`
	Access hexstr `json:"access"`
	Data   hexstr `json:"data"`
}

func (a *dfApp) state() dfAppState {
	s := dfAppState{Settings: a.settings, KeyType: a.keyType, Versions: slices.Clone(a.versions),
		ISOFID: slices.Clone(a.isoFID), DFName: slices.Clone(a.dfName)}
	for _, k := range a.keys {
		s.Keys = append(s.Keys, slices.Clone(k[:]))
	}
	for _, no := range slices.Sorted(mapKeys(a.files)) {
		f := a.files[no]
		s.Files = append(s.Files, dfFileState{No: no, Type: f.typ, Comm: f.comm,
			Access: slices.Clone(f.access[:]), Data: slices.Clone(f.data)})
	}
	return s
}

func mapKeys(m map[byte]*dfFile) func(func(byte) bool) {
	return func(yield func(byte) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// state saves what survives the field: an uncommitted transaction does
// not.
func (d *DESFire) state() state {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := state{Version: persistVersion, Kind: d.Kind(), UID: slices.Clone(d.uid[:]),
		DESFire: &dfState{Size: d.opts.Size, RandomUID: d.opts.RandomUID, PICC: d.picc.state()}}
	s.DESFire.PICC.Files = nil
	for _, a := range d.apps {
		as := a.state()
		as.AID = slices.Clone(a.aid[:])
		s.DESFire.Apps = append(s.DESFire.Apps, as)
	}
	return s
}

func unmarshalDESFire(s *state) (Card, error) {
	if len(s.Blocks) > 0 || len(s.Bricked) > 0 || len(s.Pages) > 0 || len(s.Counters) > 0 ||
		s.AuthFailures != 0 || s.PwdBlocked || s.CfgLocked {
		return nil, errors.New("chip: unmarshal: Classic or Ultralight fields in a DESFire card")
	}
	ds := s.DESFire
	if ds == nil {
		return nil, errors.New("chip: unmarshal: DESFire card without its desfire state")
	}
	gen := DESFireEV2
	if s.Kind == KindDESFireEV3 {
		gen = DESFireEV3
	}
	d, err := NewDESFire(DESFireOptions{Generation: gen, Size: ds.Size, RandomUID: ds.RandomUID}, s.UID)
	if err != nil {
		return nil, fmt.Errorf("chip: unmarshal: %w", err)
	}
	if err := d.picc.restore(&ds.PICC, true); err != nil {
		return nil, fmt.Errorf("chip: unmarshal: PICC: %w", err)
	}
	if len(ds.Apps) > maxApps {
		return nil, fmt.Errorf("chip: unmarshal: %d applications, at most %d", len(ds.Apps), maxApps)
	}
	for i := range ds.Apps {
		as := &ds.Apps[i]
		a := &dfApp{files: map[byte]*dfFile{}}
		if len(as.AID) != 3 || [3]byte(as.AID) == [3]byte{} || d.app([3]byte(as.AID)) != nil {
			return nil, fmt.Errorf("chip: unmarshal: application %d: bad or repeated AID", i)
		}
		a.aid = [3]byte(as.AID)
		if err := a.restore(as, false); err != nil {
			return nil, fmt.Errorf("chip: unmarshal: application %X: %w", a.aid, err)
		}
		d.apps = append(d.apps, a)
	}
	if d.used() > d.opts.Size {
		return nil, fmt.Errorf("chip: unmarshal: files need %d bytes of %d", d.used(), d.opts.Size)
	}
	d.activate()
	return d, nil
}

func (a *dfApp) restore(s *dfAppState, picc bool) error {
	n := len(s.Keys)
	switch {
	case picc && n != 1, !picc && (n < 1 || n > maxKeys):
		return fmt.Errorf("%d keys", n)
	case len(s.Versions) != n:
		return fmt.Errorf("%d key versions for %d keys", len(s.Versions), n)
	case s.KeyType != keyTypeAES && !(picc && s.KeyType == keyTypeDES):
		return fmt.Errorf("key type %#02x", s.KeyType)
	case len(s.ISOFID) != 0 && len(s.ISOFID) != 2, len(s.DFName) > 16:
		return errors.New("bad ISO file id or DF name")
	case picc && (len(s.Files) > 0 || len(s.ISOFID) > 0 || len(s.DFName) > 0):
		return errors.New("files or ISO names at the PICC level")
	}
	a.settings, a.keyType = s.Settings, s.KeyType
	a.keys = make([][16]byte, n)
	for i, k := range s.Keys {
		if len(k) != 16 {
			return fmt.Errorf("key %d of %d bytes", i, len(k))
		}
		a.keys[i] = [16]byte(k)
	}
	a.versions = slices.Clone([]byte(s.Versions))
	if len(s.ISOFID) > 0 {
		a.isoFID = slices.Clone([]byte(s.ISOFID))
	}
	if len(s.DFName) > 0 {
		a.dfName = slices.Clone([]byte(s.DFName))
	}
	for _, fs := range s.Files {
		switch {
		case fs.No >= maxFiles || a.files[fs.No] != nil:
			return fmt.Errorf("bad or repeated file number %d", fs.No)
		case fs.Type != fileStd && fs.Type != fileBackup:
			return fmt.Errorf("file %d: type %d", fs.No, fs.Type)
		case fs.Comm != commPlain && fs.Comm != commMAC && fs.Comm != commFull:
			return fmt.Errorf("file %d: communication mode %d", fs.No, fs.Comm)
		case len(fs.Access) != 2 || len(fs.Data) == 0 || len(fs.Data) > 1<<24-1:
			return fmt.Errorf("file %d: bad access rights or size", fs.No)
		}
		a.files[fs.No] = &dfFile{typ: fs.Type, comm: fs.Comm, access: [2]byte(fs.Access), data: slices.Clone([]byte(fs.Data))}
	}
	return nil
}
