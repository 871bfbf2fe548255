package hwtest_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest/pcscd"
	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// bridgeEnv points the bridge binary at the private pcscd d.
func bridgeEnv(d *pcscd.Daemon) []string { return append(os.Environ(), d.Env()...) }

// names are the readers' names.
func names(rs []vpcd.Reader) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

// cloudEncoder is an encoder as the cloud's API shows it.
type cloudEncoder struct {
	ID, DisplayName, Reader string
	Online                  bool
}

// cloudEncoders lists the bridge's encoders as the API shows them, sorted
// by reader name.
func cloudEncoders(tb testing.TB, env *cloudtest.Env) []cloudEncoder {
	tb.Helper()
	status, out := env.Call(http.MethodPost, "/acs/encoders/list", nil)
	if status != http.StatusOK {
		tb.Fatalf("list encoders: %d %v", status, out)
	}
	var encs []cloudEncoder
	list, _ := out["acs_encoders"].([]any)
	for _, x := range list {
		e := x.(map[string]any)
		md := e["encoder_bridge_metadata"].(map[string]any)
		encs = append(encs, cloudEncoder{ID: e["acs_encoder_id"].(string), DisplayName: e["display_name"].(string),
			Reader: md["reader_name"].(string), Online: md["is_online"] == true})
	}
	sort.Slice(encs, func(i, j int) bool { return encs[i].Reader < encs[j].Reader })
	return encs
}

// online is the readers of the encoders the cloud shows online.
func online(encs []cloudEncoder) []string {
	var out []string
	for _, e := range encs {
		if e.Online {
			out = append(out, e.Reader)
		}
	}
	return out
}

// waitOnline polls the cloud's API until the online encoders are exactly
// readers, and returns when it saw that.
func waitOnline(tb testing.TB, env *cloudtest.Env, log fmt.Stringer, readers ...string) time.Time {
	tb.Helper()
	sort.Strings(readers)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := online(cloudEncoders(tb, env))
		if slices.Equal(got, readers) {
			return time.Now()
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the cloud shows %q online, want %q; the bridge's log:\n%s", got, readers, log)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkReaderAnnounce times how long the cloud takes to show a reader
// plugged in or unplugged, through the real bridge binary and a private
// pcscd (hwtest/pcscd), whose vpcd readers come and go with it: unplugged
// runs from stopping pcscd (its shutdown included) to the cloud showing
// the encoders offline, plugged from starting it (its start-up included,
// reported alone as pcscd-start) to the cloud showing them online, and
// plug-after-ready from when pcscd serves its socket with every vpcd
// reader listening (pcscd.Daemon.Start returned). The cloud is polled
// every 2 ms through its API. docs/benchmarks.md has the results.
func BenchmarkReaderAnnounce(b *testing.B) {
	d := pcscd.ForTest(b, pcscd.Options{Name: "Bench Desk"})
	env := cloudtest.New(b, cloudtest.Options{Clock: clock.NewFake(time.Now())})
	br := startBinBridgeWith(b, env, bridgeOptions{Env: bridgeEnv(d)})
	slots := names(d.Readers())
	waitOnline(b, env, br.Log, slots...)
	var plug, afterReady, unplug, start []time.Duration
	b.ResetTimer()
	for range b.N {
		at := time.Now()
		if err := d.Stop(); err != nil {
			b.Fatal(err)
		}
		unplug = append(unplug, waitOnline(b, env, br.Log).Sub(at))
		at = time.Now()
		if err := d.Start(); err != nil {
			b.Fatal(err)
		}
		ready := time.Now()
		start = append(start, ready.Sub(at))
		seen := waitOnline(b, env, br.Log, slots...)
		plug = append(plug, seen.Sub(at))
		afterReady = append(afterReady, seen.Sub(ready))
	}
	b.StopTimer()
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"plug", plug}, {"plug-after-ready", afterReady}, {"unplug", unplug}, {"pcscd-start", start}} {
		b.ReportMetric(percentile(m.d, 50), m.name+"-p50-ms")
		b.ReportMetric(percentile(m.d, 99), m.name+"-p99-ms")
	}
}

// pcscd going away and coming back is logged once each time, however long
// it stays away (the bridge asks for it every 100 ms meanwhile), and the
// encoders follow it.
func TestPCSCDRestartLoggedOnce(t *testing.T) {
	d := pcscd.ForTest(t, pcscd.Options{Name: "Restart Desk"})
	env := cloudtest.New(t, cloudtest.Options{Clock: clock.NewFake(time.Now())})
	br := startBinBridgeWith(t, env, bridgeOptions{Env: bridgeEnv(d)})
	slots := names(d.Readers())
	waitOnline(t, env, br.Log, slots...)
	const cycles = 2
	for range cycles {
		if err := d.Stop(); err != nil {
			t.Fatal(err)
		}
		waitOnline(t, env, br.Log)
		// Many retries while pcscd is away.
		time.Sleep(2 * time.Second)
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		waitOnline(t, env, br.Log, slots...)
	}
	br.Stop()
	log := br.Log.String()
	for _, line := range []string{"pcsc: pcscd not available", "pcsc: pcscd available again"} {
		if n := strings.Count(log, line); n != cycles {
			t.Errorf("%q logged %d times for %d restarts:\n%s", line, n, cycles, log)
		}
	}
	if strings.Contains(log, "cannot follow readers") {
		t.Errorf("a pcscd restart is no failure to follow readers:\n%s", log)
	}
}

// An encoder's identity outlives pcscd restarts with another reader.conf,
// beside readers that leave and come back or are new: the cloud's
// acs_encoder_id and display name stay, a reader that left is offline, a
// reader that comes back is its old encoder again, a new one is another
// encoder.
//
// A reader coming back under another index ("X 01 00" as "X 00 00")
// cannot be made with vpcd: pcsc-lite 1.9.9 names reader.conf entries
// that share a FRIENDLYNAME alike ("X 00 00" twice), and a pcscd started
// afresh gives every name index 00. bridge/agent's tests cover that rule
// with the simulated reader (TestIdentities, TestReaderReplugKeepsEncoder).
func TestReplugIdentity(t *testing.T) {
	d := pcscd.ForTest(t, pcscd.Options{Name: "Ident", Entries: 2})
	env := cloudtest.New(t, cloudtest.Options{Clock: clock.NewFake(time.Now())})
	br := startBinBridgeWith(t, env, bridgeOptions{Env: bridgeEnv(d), Config: `encoders:
  - reader: "Ident #1 * 00"
    name: Front desk
  - reader: "Ident #2 * 00"
  - reader: "Ident #3 * 00"
`})
	const x, y, z = "Ident #1 00 00", "Ident #2 00 00", "Ident #3 00 00"
	waitOnline(t, env, br.Log, x, y)
	card := insertPrivate(t, d.Readers()[0])
	before := byReader(cloudEncoders(t, env))
	frontDesk := before[x]
	// A configured name, else the reader's without its plug-order index.
	if frontDesk.DisplayName != "Front desk" || before[y].DisplayName != "Ident #2" {
		t.Fatalf("encoders %+v", before)
	}

	restart := func(entries int, online ...string) map[string]cloudEncoder {
		t.Helper()
		if err := d.Stop(); err != nil {
			t.Fatal(err)
		}
		<-card.Done()
		if err := d.Reconfigure(entries); err != nil {
			t.Fatal(err)
		}
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		card = insertPrivate(t, d.Readers()[0])
		waitOnline(t, env, br.Log, online...)
		return byReader(cloudEncoders(t, env))
	}
	// Y unplugged.
	now := restart(1, x)
	if got := now[x]; got.ID != frontDesk.ID || got.DisplayName != "Front desk" {
		t.Errorf("after Y left, X is %+v, was %+v", got, frontDesk)
	}
	if got := now[y]; got.ID != before[y].ID || got.Online {
		t.Errorf("Y, unplugged: %+v", got)
	}
	// Y back (on another port), and Z new.
	now = restart(3, x, y, z)
	if got := now[x]; got.ID != frontDesk.ID || got.DisplayName != "Front desk" {
		t.Errorf("after Y came back and Z was new, X is %+v, was %+v", got, frontDesk)
	}
	if now[y].ID != before[y].ID {
		t.Errorf("Y came back as %+v, was %+v", now[y], before[y])
	}
	if id := now[z].ID; id == frontDesk.ID || id == before[y].ID || len(now) != 3 {
		t.Errorf("the new reader Z is not an encoder of its own: %+v", now)
	}
}

func byReader(encs []cloudEncoder) map[string]cloudEncoder {
	m := map[string]cloudEncoder{}
	for _, e := range encs {
		m[e.Reader] = e
	}
	return m
}

// insertPrivate puts a virtual MIFARE Classic card into reader r of a
// private pcscd; it leaves when that pcscd stops.
func insertPrivate(t *testing.T, r vpcd.Reader) *vpcd.Slot {
	t.Helper()
	card, err := chip.New(chip.KindClassic1K, nil)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := vpcd.Insert(context.Background(), r.Addr, card)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vs.Remove() })
	select {
	case <-vs.Attached():
	case <-time.After(10 * time.Second):
		t.Fatalf("vpcd at %s did not take the card", r.Addr)
	}
	return vs
}
