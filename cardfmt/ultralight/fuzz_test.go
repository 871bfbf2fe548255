package ultralight

import (
	"context"
	"errors"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/reader"
)

// FuzzScan fills an NTAG213 (even first byte) or an MF0UL21 with
// arbitrary memory from page 2 on, configuration and password included,
// and scans it: a card's memory comes from outside. Scan must end in a
// verdict, never a valid record other than the seed's, and must never send
// a password to a card whose marker names another site. An encode must
// then either succeed and scan valid, or fail with a layout error and
// send no password its marker does not name either.
func FuzzScan(f *testing.F) {
	ks := keySet(f, "site", 2)
	r := newRig(f, reader.TechNTAG213, uidA)
	r.mustEncode(ks, credential("1001", 1))
	var seed []byte
	for p := 2; p < r.chip.Pages(); p++ {
		seed = append(seed, r.chip.Page(p)...)
	}
	f.Add(append([]byte{0}, seed...))
	f.Add([]byte{1, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0, 'E', 'U', 1, 0, 1, 2, 3, 4})
	f.Add([]byte{0, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0, 'E', 'B', 1, 1, 0, 0x60, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		tech := reader.TechNTAG213
		if data[0]&1 == 1 {
			tech = reader.TechUL21
		}
		r := newRig(t, tech, uidA)
		mem := data[1:]
		for p := 2; p < r.chip.Pages() && len(mem) > 0; p++ {
			page := make([]byte, pageSize)
			n := copy(page, mem)
			mem = mem[n:]
			if p == 2 {
				page[0], page[1] = r.chip.Page(2)[0], r.chip.Page(2)[1] // serial number check byte, internal
			}
			r.chip.SetPage(p, page)
		}
		r.chip.Reset()
		// A marker that an unauthenticated READ of pages 2-5 shows.
		m, marked := parseMarker(append(r.chip.Page(markerPage), r.chip.Page(markerPage+1)...))
		cfg := r.chip.ConfigPage()
		visible := r.chip.Page(cfg + 1)[0]&accessPROT == 0 || r.chip.Page(cfg)[3] > markerPage+1
		other := marked && visible && m.keyID != siteID(ks)
		pc := &pwdCounter{Card: r.chip}
		r.rdr.Insert(pc)
		k := r.connect()
		s, err := Scan(context.Background(), k.tag, k.info, ks)
		k.card.Close()
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		if s.Valid() && s.Record.ID != credential("1001", 1).ID {
			t.Fatal("a record nobody sealed scans valid")
		}
		if other && pc.n != 0 {
			t.Fatalf("%d PWD_AUTH to a card marked by another site", pc.n)
		}
		c := credential("2002", 1)
		err = r.encode(ks, c)
		switch {
		case err == nil:
			sameCredential(t, r.scan(ks), c)
		case errors.Is(err, cardfmt.ErrForeign), errors.Is(err, cardfmt.ErrIncompatible), errors.Is(err, cardfmt.ErrInterrupted):
		default:
			t.Fatalf("encode: %v", err)
		}
		if other && pc.n != 0 {
			t.Fatalf("%d PWD_AUTH to a card marked by another site", pc.n)
		}
	})
}
