package hwtest_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// vpcdDriver is vsmartcard's pcscd driver.
const vpcdDriver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"

// vreader is one reader.conf entry for vpcd: FRIENDLYNAME at port (slot 0)
// and port+1 (slot 1). pcsc-lite names its slots "NAME II 00" and
// "NAME II 01", II telling apart entries of the same name in load order.
type vreader struct {
	name string
	port int
}

// privatePCSCD is a pcscd of the test's own, with its own reader.conf and
// client socket, beside the system's: a private mount namespace gives it
// its own /run/pcscd (its pid file and socket), bound to a directory the
// test and the bridge reach through PCSCLITE_CSOCK_NAME. Restarting it
// with another reader.conf is how readers come and go with vpcd, whose
// readers exist while its driver is loaded.
type privatePCSCD struct {
	tb     testing.TB
	dir    string
	Socket string
	Log    *syncbuf.Buffer

	cmd    *exec.Cmd
	exited chan struct{}
}

func newPrivatePCSCD(tb testing.TB) *privatePCSCD {
	tb.Helper()
	for _, tool := range []string{"pcscd", "unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailableTB(tb, fmt.Errorf("%s not found", tool))
		}
	}
	if _, err := os.Stat(vpcdDriver); err != nil {
		unavailableTB(tb, err)
	}
	if _, err := os.Stat("/run/pcscd"); err != nil {
		unavailableTB(tb, err)
	}
	if os.Geteuid() != 0 {
		unavailableTB(tb, fmt.Errorf("a private pcscd needs root for its mount namespace"))
	}
	dir, err := os.MkdirTemp("", "pcscd-")
	if err != nil {
		tb.Fatal(err)
	}
	p := &privatePCSCD{tb: tb, dir: dir, Socket: filepath.Join(dir, "run", "pcscd.comm"), Log: &syncbuf.Buffer{}}
	tb.Cleanup(func() {
		p.Stop()
		os.RemoveAll(dir)
	})
	return p
}

// unavailableTB skips without the tools, or fails with CI set.
func unavailableTB(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("private pcscd: %v (CI is set: scripts/setup-debian.sh installs pcscd and vsmartcard-vpcd; the tests run as root)", err)
	}
	tb.Skipf("private pcscd: %v", err)
}

// Start starts pcscd with readers and returns when it says it is ready,
// with the time it said so.
func (p *privatePCSCD) Start(readers ...vreader) time.Time {
	p.tb.Helper()
	conf := filepath.Join(p.dir, "conf")
	run := filepath.Join(p.dir, "run")
	os.RemoveAll(conf)
	for _, d := range []string{conf, run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			p.tb.Fatal(err)
		}
	}
	var b strings.Builder
	for _, r := range readers {
		fmt.Fprintf(&b, "FRIENDLYNAME \"%s\"\nDEVICENAME /dev/null:0x%04X\nLIBPATH %s\nCHANNELID 0x%04X\n\n", r.name, r.port, vpcdDriver, r.port)
	}
	if err := os.WriteFile(filepath.Join(conf, "readers"), []byte(b.String()), 0o644); err != nil {
		p.tb.Fatal(err)
	}
	os.Remove(p.Socket)
	cmd := exec.Command("unshare", "-m", "sh", "-c", `mount --bind "$1" /run/pcscd && exec pcscd -f -i -c "$2"`, "sh", run, conf)
	out, err := cmd.StdoutPipe()
	if err != nil {
		p.tb.Fatal(err)
	}
	cmd.Stderr = p.Log
	if err := cmd.Start(); err != nil {
		p.tb.Fatal(err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	ready := make(chan time.Time, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.Log, line)
			if strings.Contains(line, "daemon ready") {
				ready <- time.Now()
			}
		}
		cmd.Wait()
		close(p.exited)
	}()
	select {
	case at := <-ready:
		return at
	case <-p.exited:
		p.tb.Fatalf("private pcscd exited at start:\n%s", p.Log)
	case <-time.After(20 * time.Second):
		p.tb.Fatalf("private pcscd not ready within 20 s:\n%s", p.Log)
	}
	return time.Time{}
}

// Stop stops pcscd (SIGTERM) and waits for it to exit; it returns when the
// signal was sent.
func (p *privatePCSCD) Stop() time.Time {
	if p.cmd == nil {
		return time.Time{}
	}
	at := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		p.tb.Errorf("private pcscd did not stop on SIGTERM")
	}
	p.cmd = nil
	return at
}

// Env is the environment pointing a process at this pcscd.
func (p *privatePCSCD) Env() []string {
	return append(os.Environ(), "PCSCLITE_CSOCK_NAME="+p.Socket)
}

// freeVPCDPort returns a port p with p and p+1 free, for one vpcd entry.
func freeVPCDPort(tb testing.TB, taken ...int) int {
	tb.Helper()
	for p := 39000 + os.Getpid()%2000*2; p < 65000; p += 2 {
		if slices.Contains(taken, p) || slices.Contains(taken, p+1) || slices.Contains(taken, p-1) {
			continue
		}
		ok := true
		for _, q := range []int{p, p + 1} {
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", q))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	tb.Fatal("no free port pair for vpcd")
	return 0
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
// plugged in or unplugged, through the real bridge binary and a pcscd of
// the test's own: unplugged is pcscd stopping (from SIGTERM to the cloud
// showing the encoders offline), plugged is pcscd starting with the reader
// (from its "daemon ready" to the cloud showing them online). The cloud is
// polled every 2 ms through its API. docs/benchmarks.md has the results.
func BenchmarkReaderAnnounce(b *testing.B) {
	p := newPrivatePCSCD(b)
	desk := vreader{name: "Bench Desk", port: freeVPCDPort(b)}
	p.Start(desk)
	env := cloudtest.New(b, cloudtest.Options{Clock: clock.NewFake(time.Now())})
	br := startBinBridgeWith(b, env, bridgeOptions{Env: p.Env()})
	slots := []string{"Bench Desk 00 00", "Bench Desk 00 01"}
	waitOnline(b, env, br.Log, slots...)
	var plug, unplug []time.Duration
	b.ResetTimer()
	for range b.N {
		at := p.Stop()
		unplug = append(unplug, waitOnline(b, env, br.Log).Sub(at))
		at = p.Start(desk)
		plug = append(plug, waitOnline(b, env, br.Log, slots...).Sub(at))
	}
	b.StopTimer()
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"plug", plug}, {"unplug", unplug}} {
		b.ReportMetric(percentile(m.d, 50), m.name+"-p50-ms")
		b.ReportMetric(percentile(m.d, 99), m.name+"-p99-ms")
		b.ReportMetric(float64(slices.Max(m.d).Microseconds())/1000, m.name+"-max-ms")
	}
}

// pcscd going away and coming back is logged once each time, however long
// it stays away (the bridge retries every half second meanwhile), and the
// encoders follow it.
func TestPCSCDRestartLoggedOnce(t *testing.T) {
	p := newPrivatePCSCD(t)
	desk := vreader{name: "Restart Desk", port: freeVPCDPort(t)}
	p.Start(desk)
	env := cloudtest.New(t, cloudtest.Options{Clock: clock.NewFake(time.Now())})
	br := startBinBridgeWith(t, env, bridgeOptions{Env: p.Env()})
	slots := []string{"Restart Desk 00 00", "Restart Desk 00 01"}
	waitOnline(t, env, br.Log, slots...)
	const cycles = 2
	for range cycles {
		p.Stop()
		waitOnline(t, env, br.Log)
		// Several retry intervals while pcscd is away.
		time.Sleep(2 * time.Second)
		p.Start(desk)
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

// An encoder's identity outlives a pcscd restart with another reader.conf,
// in which its reader loads in another order, beside a reader that left
// and one that is new: the cloud's acs_encoder_id and display name stay,
// the reader that left is offline, the new one is another encoder.
//
// A reader coming back under another index ("X 01 00" as "X 00 00")
// cannot be made with vpcd: pcsc-lite 1.9.9 names reader.conf entries
// that share a FRIENDLYNAME alike ("X 00 00" twice), and a pcscd started
// afresh gives every name index 00. bridge/agent's tests cover that rule
// with the simulated reader (TestIdentities, TestReaderReplugKeepsEncoder).
func TestReplugIdentity(t *testing.T) {
	p := newPrivatePCSCD(t)
	pa := freeVPCDPort(t)
	pb := freeVPCDPort(t, pa)
	pc := freeVPCDPort(t, pa, pb)
	x, y, z := vreader{"Ident X", pa}, vreader{"Ident Y", pb}, vreader{"Ident Z", pc}
	p.Start(y, x)
	env := cloudtest.New(t, cloudtest.Options{Clock: clock.NewFake(time.Now())})
	br := startBinBridgeWith(t, env, bridgeOptions{Env: p.Env(), Config: `encoders:
  - reader: "Ident X * 00"
    name: Front desk
  - reader: "Ident Y * 00"
  - reader: "Ident Z * 00"
`})
	waitOnline(t, env, br.Log, "Ident X 00 00", "Ident Y 00 00")
	card := insertPrivate(t, x)
	before := byReader(cloudEncoders(t, env))
	frontDesk := before["Ident X 00 00"]
	// A configured name, else the reader's without its plug-order index.
	if frontDesk.DisplayName != "Front desk" || before["Ident Y 00 00"].DisplayName != "Ident Y" {
		t.Fatalf("encoders %+v", before)
	}

	// Another reader.conf: Y gone, Z new, X loaded after Z.
	p.Stop()
	<-card.Done()
	p.Start(z, x)
	card = insertPrivate(t, x)
	waitOnline(t, env, br.Log, "Ident X 00 00", "Ident Z 00 00")
	after := cloudEncoders(t, env)
	now := byReader(after)
	if got := now["Ident X 00 00"]; got.ID != frontDesk.ID || got.DisplayName != "Front desk" {
		t.Errorf("after the restart X is %+v, was %+v", got, frontDesk)
	}
	if got := now["Ident Z 00 00"]; got.ID == frontDesk.ID || got.ID == before["Ident Y 00 00"].ID {
		t.Errorf("the new reader Z took another encoder's id: %+v", after)
	}
	if len(after) != 3 {
		t.Errorf("the cloud lists %d encoders, want X, Y (offline) and Z: %+v", len(after), after)
	}

}

func byReader(encs []cloudEncoder) map[string]cloudEncoder {
	m := map[string]cloudEncoder{}
	for _, e := range encs {
		m[e.Reader] = e
	}
	return m
}

// insertPrivate puts a virtual MIFARE Classic card into r's first slot on
// the private pcscd; it leaves when that pcscd stops.
func insertPrivate(t *testing.T, r vreader) *vpcd.Slot {
	t.Helper()
	card, err := chip.New(chip.KindClassic1K, nil)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := vpcd.Insert(context.Background(), fmt.Sprintf("127.0.0.1:%d", r.port), card)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vs.Remove() })
	select {
	case <-vs.Attached():
	case <-time.After(10 * time.Second):
		t.Fatalf("vpcd at %d did not take the card", r.port)
	}
	return vs
}
