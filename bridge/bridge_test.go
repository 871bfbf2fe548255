package bridge

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const credJSON = `{
  "credential_id": "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5",
  "card_number": "100234",
  "card_function_type": "guest",
  "starts_at": "2026-11-23T15:00:00Z",
  "ends_at": "2026-11-26T11:00:00Z",
  "entrance_ids": ["0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"],
  "issue_sequence": 3
}`

func TestParseCredential(t *testing.T) {
	c, err := ParseCredential([]byte(credJSON))
	if err != nil {
		t.Fatal(err)
	}
	if c.CardNumber != "100234" || c.Function != cardfmt.FunctionGuest || c.IssueSequence != 3 || len(c.Entrances) != 1 {
		t.Fatalf("parsed %+v", c)
	}
	if spec := SpecOf(c); spec.StartsAt != "2026-11-23T15:00:00Z" || *spec.IssueSequence != 3 {
		t.Fatalf("SpecOf = %+v", spec)
	}

	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", ``, []string{"empty input"}},
		{"not json", `{"credential_id": }`, []string{"malformed JSON at line 1"}},
		{"truncated", `{"card_number": "1"`, []string{"truncated"}},
		{"unknown field", `{"card_numbr": "1"}`, []string{`unknown field "card_numbr"`}},
		{"wrong type", `{"issue_sequence": "one"}`, []string{"issue_sequence: must be a uint32"}},
		{"all missing", `{}`, []string{"credential_id: missing", "card_number: missing", "card_function_type: missing", "starts_at: missing", "ends_at: missing", "issue_sequence: missing"}},
		{"bad values", `{"credential_id":"x","card_number":"1","card_function_type":"vip","starts_at":"tomorrow","ends_at":"2026-11-26T11:00:00Z","entrance_ids":["y"],"issue_sequence":1}`,
			[]string{"credential_id: not a UUID", `card_function_type: unknown "vip"`, "starts_at: not an RFC 3339 time", "entrance_ids[0]: not a UUID"}},
		{"trailing", credJSON + `{}`, []string{"trailing data"}},
		{"ends before starts", strings.Replace(credJSON, "2026-11-26T11", "2026-11-20T11", 1), []string{"ends_at"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCredential([]byte(tt.in))
			if !errors.Is(err, ErrInvalidCredential) {
				t.Fatalf("err = %v, want ErrInvalidCredential", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func FuzzParseCredential(f *testing.F) {
	f.Add([]byte(credJSON))
	f.Add([]byte(`{"entrance_ids":[1,2]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCredential(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted an invalid credential: %v", err)
		}
	})
}

func TestClassify(t *testing.T) {
	tests := []struct {
		op   Op
		err  error
		want protocol.ErrorType
	}{
		{OpEncode, fmt.Errorf("x: %w", reader.ErrNoCard), protocol.ErrorNoCredentialOnEncoder},
		{OpScan, context.DeadlineExceeded, protocol.ErrorNoCredentialOnEncoder},
		{OpEncode, reader.ErrCardRemoved, protocol.ErrorEncodingInterrupted},
		{OpScan, reader.ErrCardRemoved, protocol.ErrorNoCredentialOnEncoder},
		{OpEncode, fmt.Errorf("x: %w", reader.ErrCardChanged), protocol.ErrorEncodingInterrupted},
		{OpScan, fmt.Errorf("x: %w", reader.ErrCardChanged), protocol.ErrorNoCredentialOnEncoder},
		{OpEncode, fmt.Errorf("%w: %w", cardfmt.ErrInterrupted, reader.ErrTimeout), protocol.ErrorEncodingInterrupted},
		{OpEncode, cardfmt.ErrIncompatible, protocol.ErrorIncompatibleCardFormat},
		{OpEncode, cardfmt.ErrForeign, protocol.ErrorIncompatibleCardFormat},
		{OpScan, reader.ErrTimeout, protocol.ErrorEncoderCommunicationTimeout},
		{OpScan, reader.ErrReaderGone, protocol.ErrorEncoderNotOnline},
		{OpScan, reader.ErrNoService, protocol.ErrorEncoderNotOnline},
		{OpEncode, fmt.Errorf("%w: card_number", ErrInvalidCredential), protocol.ErrorInvalidCredential},
		{OpEncode, errors.New("boom"), protocol.ErrorUncategorized},
		{OpEncode, &JobError{Code: protocol.ErrorKeyFile, Err: errors.New("k")}, protocol.ErrorKeyFile},
	}
	for _, tt := range tests {
		je := Classify(tt.op, tt.err)
		if je.Code != tt.want {
			t.Errorf("Classify(%v) = %s, want %s", tt.err, je.Code, tt.want)
		}
		if !errors.Is(je, tt.err) && !errors.As(tt.err, new(*JobError)) {
			t.Errorf("JobError does not wrap %v", tt.err)
		}
	}
	if Classify(OpScan, nil) != nil {
		t.Error("Classify(nil) != nil")
	}
}

// station is a Station over a simulated reader with one card.
func station(t *testing.T, kind string) (*Station, *sim.Reader, chip.Card) {
	t.Helper()
	ks, err := cardfmt.GenerateKeySet(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := sim.New()
	r := s.Plug("Sim 00")
	c, err := chip.New(kind, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Insert(c)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	return &Station{Readers: s, Keys: ks, Now: func() time.Time { return now }}, r, c
}

func TestEncodeScanEveryCard(t *testing.T) {
	cred, err := ParseCredential([]byte(credJSON))
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"mifare_classic_1k", "mifare_classic_4k", "mifare_ultralight_ev1_mf0ul21", "ntag213", "ntag215", "ntag216",
		"mifare_desfire_ev2", "mifare_desfire_ev3"} {
		t.Run(kind, func(t *testing.T) {
			st, _, c := station(t, kind)
			ctx := context.Background()
			card, err := st.Encode(ctx, "Sim 00", cred, 0)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if string(card.Technology) != kind || string(card.UID) != string(c.UID()) {
				t.Fatalf("card = %+v", card)
			}
			res, err := st.Scan(ctx, "Sim 00", 0)
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if !res.Valid() || res.Record.ID != cred.ID || len(res.Warnings) != 0 {
				t.Fatalf("scan: valid=%v reason=%s warnings=%v", res.Valid(), res.Reason, res.Warnings)
			}
			// Encode reports the versions the card now holds, as a scan reads them.
			if got, want := card.Record, res.Record; got.ID != want.ID || got.FormatVersion != want.FormatVersion || got.KeyVersion != want.KeyVersion ||
				got.KeyVersion != st.Keys.Current().Version {
				t.Fatalf("encode reported record v%d key %d (%s), scan reads v%d key %d (%s)",
					got.FormatVersion, got.KeyVersion, got.ID, want.FormatVersion, want.KeyVersion, want.ID)
			}
			st.Now = func() time.Time { return cred.EndsAt.Add(time.Minute) }
			if res, _ := st.Scan(ctx, "Sim 00", 0); strings.Join(res.Warnings, ",") != "expired" {
				t.Fatalf("warnings after ends_at: %v", res.Warnings)
			}
			st.Now = func() time.Time { return cred.StartsAt.Add(-time.Minute) }
			if res, _ := st.Scan(ctx, "Sim 00", 0); strings.Join(res.Warnings, ",") != "not_yet_valid" {
				t.Fatalf("warnings before starts_at: %v", res.Warnings)
			}
		})
	}
}

func TestStationErrors(t *testing.T) {
	cred, _ := ParseCredential([]byte(credJSON))
	ctx := context.Background()

	t.Run("no card", func(t *testing.T) {
		st, r, _ := station(t, "ntag213")
		r.Remove()
		_, err := st.Encode(ctx, "Sim 00", cred, 0)
		wantCode(t, err, protocol.ErrorNoCredentialOnEncoder)
		_, err = st.Scan(ctx, "Sim 00", 20*time.Millisecond)
		wantCode(t, err, protocol.ErrorNoCredentialOnEncoder)
	})
	t.Run("card presented while waiting", func(t *testing.T) {
		st, r, c := station(t, "ntag213")
		r.Remove()
		go func() {
			<-st.Readers.(*sim.Context).Waiting(1)
			r.Insert(c)
		}()
		if _, err := st.Encode(ctx, "Sim 00", cred, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unknown reader", func(t *testing.T) {
		st, _, _ := station(t, "ntag213")
		_, err := st.Scan(ctx, "nope", 0)
		wantCode(t, err, protocol.ErrorEncoderNotOnline)
	})
	t.Run("wrong card type", func(t *testing.T) {
		st, _, _ := station(t, "mifare_ultralight_ev1_mf0ul11")
		_, err := st.Encode(ctx, "Sim 00", cred, 0)
		wantCode(t, err, protocol.ErrorIncompatibleCardFormat)
	})
	t.Run("removed mid-encode", func(t *testing.T) {
		st, r, c := station(t, "mifare_classic_1k")
		r.Insert(chip.WithFaults(c, chip.Faults{RemoveAt: 12}))
		_, err := st.Encode(ctx, "Sim 00", cred, 0)
		wantCode(t, err, protocol.ErrorEncodingInterrupted)
	})
	t.Run("DESFire removed mid-write", func(t *testing.T) {
		st, r, c := station(t, "mifare_desfire_ev2")
		// Identify sends 4 APDUs; the factory issue writes at its 13th.
		r.Insert(chip.WithFaults(c, chip.Faults{RemoveAt: 4 + 13}))
		_, err := st.Encode(ctx, "Sim 00", cred, 0)
		wantCode(t, err, protocol.ErrorEncodingInterrupted)
	})
	t.Run("communication timeout", func(t *testing.T) {
		st, r, c := station(t, "mifare_classic_1k")
		r.Insert(chip.WithFaults(c, chip.Faults{FailAt: 4}))
		_, err := st.Scan(ctx, "Sim 00", 0)
		wantCode(t, err, protocol.ErrorEncoderCommunicationTimeout)
	})
	t.Run("invalid credential", func(t *testing.T) {
		st, _, _ := station(t, "ntag213")
		bad := cred
		bad.CardNumber = ""
		_, err := st.Encode(ctx, "Sim 00", bad, 0)
		wantCode(t, err, protocol.ErrorInvalidCredential)
	})
}

func wantCode(t *testing.T, err error, want protocol.ErrorType) {
	t.Helper()
	var je *JobError
	if !errors.As(err, &je) {
		t.Fatalf("err = %v, want a JobError %s", err, want)
	}
	if je.Code != want {
		t.Fatalf("code = %s (%v), want %s", je.Code, je.Err, want)
	}
}

func TestResolveReader(t *testing.T) {
	ctx := context.Background()
	s := sim.New()
	if _, err := ResolveReader(ctx, s, ""); !errors.Is(err, reader.ErrNoReaders) {
		t.Fatalf("no readers: %v", err)
	}
	s.Plug("ACS ACR1252 1S CL Reader PICC 0")
	if got, err := ResolveReader(ctx, s, ""); err != nil || got != "ACS ACR1252 1S CL Reader PICC 0" {
		t.Fatalf("only reader: %q %v", got, err)
	}
	s.Plug("ACS ACR1252 1S CL Reader SAM 0")
	tests := []struct {
		name, want string
		ok         bool
	}{
		{"ACS ACR1252 1S CL Reader SAM 0", "ACS ACR1252 1S CL Reader SAM 0", true},
		{"picc", "ACS ACR1252 1S CL Reader PICC 0", true},
		{"ACR1252", "", false},
		{"Omnikey", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, err := ResolveReader(ctx, s, tt.name)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("ResolveReader(%q) = %q, %v", tt.name, got, err)
		}
		if err != nil && !errors.Is(err, reader.ErrUnknownReader) {
			t.Errorf("ResolveReader(%q): %v is not ErrUnknownReader", tt.name, err)
		}
	}
}

// unplugAt unplugs the reader while the card answers APDU n, as a USB
// reader pulled out mid-job.
type unplugAt struct {
	chip.Card
	n, seen int
	unplug  func()
}

func (u *unplugAt) Transmit(apdu []byte) ([]byte, error) {
	u.seen++
	if u.seen == u.n {
		u.unplug()
	}
	return u.Card.Transmit(apdu)
}

func TestReaderUnplugged(t *testing.T) {
	cred, _ := ParseCredential([]byte(credJSON))
	tests := []struct {
		at   int
		want protocol.ErrorType
	}{
		{2, protocol.ErrorEncoderNotOnline},     // while identifying the card
		{14, protocol.ErrorEncodingInterrupted}, // while writing
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.at), func(t *testing.T) {
			st, r, c := station(t, "mifare_classic_1k")
			s := st.Readers.(*sim.Context)
			r.Insert(&unplugAt{Card: c, n: tt.at, unplug: func() { s.Unplug("Sim 00") }})
			_, err := st.Encode(context.Background(), "Sim 00", cred, 0)
			wantCode(t, err, tt.want)
			if !errors.Is(err, reader.ErrReaderGone) {
				t.Fatalf("%v does not name the unplugged reader", err)
			}
		})
	}
}

// The Card hook sees the card identified, before anything else: refusing
// it ends the job with the card untouched and no stage past identifying.
func TestCardHook(t *testing.T) {
	cred, _ := ParseCredential([]byte(credJSON))
	errRefused := errors.New("not this card")
	for _, tc := range []struct {
		name   string
		refuse bool
	}{
		{"accepted", false},
		{"refused", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, _, c := station(t, "mifare_classic_1k")
			var seen []Card
			var stages []protocol.Stage
			_, err := st.EncodeWith(context.Background(), "Sim 00", cred, JobOptions{
				Card: func(k Card) error {
					seen = append(seen, k)
					if tc.refuse {
						return errRefused
					}
					return nil
				},
				Progress: func(s protocol.Stage) error { stages = append(stages, s); return nil },
			})
			if len(seen) != 1 || string(seen[0].UID) != string(c.UID()) || seen[0].Technology != reader.TechClassic1K || seen[0].Reader != "Sim 00" {
				t.Fatalf("the hook saw %+v, want the card on Sim 00 once", seen)
			}
			if !tc.refuse {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, errRefused) {
				t.Fatalf("err = %v, want the hook's", err)
			}
			if len(stages) != 1 || stages[0] != protocol.StageWaitingForCard {
				t.Fatalf("stages after a refusal: %v", stages)
			}
			if sc, err := st.Scan(context.Background(), "Sim 00", 0); err != nil || sc.Reason != cardfmt.ReasonBlank {
				t.Fatalf("the refused card scans %+v, %v; want it blank, untouched", sc.Scan, err)
			}
		})
	}
}
