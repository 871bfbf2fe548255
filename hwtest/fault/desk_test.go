package fault_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/seam"
	"github.com/encoder-bridge/encoder-bridge/hwtest/pcscd"
	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/internal/pgtest"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// jobTimeout is the cloud's job timeout in the matrix: long enough for an
// encode after a bridge restart, short enough that a cell never waits long.
const jobTimeout = 20 * time.Second

var bins = map[string]string{}

// daemon is the package's private pcscd (see TestMain); daemonErr says
// why there is none.
var (
	daemon    *pcscd.Daemon
	daemonErr error
)

// TestMain builds encoder-cloud and encoder-bridge once for every cell
// and points the process and the bridges it starts at a private pcscd:
// TestPCSCDRestart restarts it, and the machine's stays untouched. libpcsclite
// reads the socket once per process, so every test here uses it. Where a
// private pcscd cannot run, the other tests use the machine's and
// TestPCSCDRestart skips (fails with CI set).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "encoder-bridge-fault")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, name := range []string{"encoder-cloud", "encoder-bridge"} {
		p := filepath.Join(dir, name)
		if out, err := exec.Command("go", "build", "-o", p, "../../cmd/"+name).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", name, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		bins[name] = p
	}
	daemon, daemonErr = pcscd.New(pcscd.Options{Name: "Fault PCD"})
	if daemonErr == nil {
		daemonErr = daemon.Use()
	}
	// pgtest.Main stops the PostgreSQL cluster TestKillInstance starts.
	code := pgtest.Main(m)
	if daemon != nil {
		if err := daemon.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one run of a binary, with its output kept for failure messages.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// start runs a built binary; faults restart processes from the proxy's
// goroutine, so it returns the error rather than failing the test.
func start(log *syncbuf.Buffer, name string, args ...string) (*proc, error) {
	cmd := exec.Command(bins[name], args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	return p, nil
}

// kill is SIGKILL: no chance to flush or say goodbye.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// stop is SIGINT, the clean stop, bounded.
func (p *proc) stop(t *testing.T) {
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.kill()
		t.Errorf("%s did not stop on SIGINT", filepath.Base(p.cmd.Path))
	}
}

// desk is a front desk: encoder-cloud serve, the proxy, encoder-bridge run
// through it, each a separate process or listener, with the bridge's
// encoder on a vpcd reader.
type desk struct {
	t      *testing.T
	dir    string
	listen string // the cloud's address
	db     string // the database: the SQLite file, or a postgres:// URL
	// api is where the test calls the API: the cloud's address, or with
	// two instances the second's.
	api string
	// The second instance, on the same PostgreSQL database (newDuoDesk);
	// the bridge dials it after the first.
	listenB string
	cloudB  *proc
	boot    cloud.Bootstrap
	keys    *cardfmt.KeySet
	proxy   *proxy
	cfg     string
	log     syncbuf.Buffer

	mu     sync.Mutex
	cloud  *proc
	bridge *proc
	card   chip.Card    // the card as vpcd serves it
	extra  []*vpcd.Slot // the card put back after a fault took it out

	encoderID string
	http      http.Client
}

func newDesk(t *testing.T, readerName string) *desk { return newDeskOn(t, readerName, "") }

// newDuoDesk is a desk whose cloud is two instances on the PostgreSQL
// database dsn: the bridge lists the first (through the proxy) and then
// the second in cloud.urls, and the test calls the API on the second, so
// the job crosses from one instance to the other.
func newDuoDesk(t *testing.T, readerName, dsn string) *desk { return newDeskOn(t, readerName, dsn) }

func newDeskOn(t *testing.T, readerName, dsn string) *desk {
	t.Helper()
	d := &desk{t: t, dir: t.TempDir(), listen: freeAddr(t), db: dsn, http: http.Client{Timeout: 10 * time.Second}}
	d.api = d.listen
	if d.db == "" {
		d.db = filepath.Join(d.dir, "cloud.db")
	} else {
		d.listenB = freeAddr(t)
		d.api = d.listenB
	}
	bootFile := filepath.Join(d.dir, "bootstrap.json")
	if out, err := exec.Command(bins["encoder-cloud"], "init", "--db", d.db, "--out", bootFile).CombinedOutput(); err != nil {
		t.Fatalf("encoder-cloud init: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(bootFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &d.boot); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(d.dir, "keys.json")
	if out, err := exec.Command(bins["encoder-bridge"], "keys", "init", "--out", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("keys init: %v\n%s", err, out)
	}
	if d.keys, err = cardfmt.LoadKeySet(keyFile); err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(d.dir, "bridge.token")
	if err := os.WriteFile(token, []byte(d.boot.BridgeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.startCloud(); err != nil {
		t.Fatal(err)
	}
	urls := ""
	if d.listenB != "" {
		if d.cloudB, err = d.startInstance(d.listenB); err != nil {
			t.Fatal(err)
		}
		urls = ", ws://" + d.listenB
	}
	if d.proxy, err = newProxy(d.listen); err != nil {
		t.Fatal(err)
	}
	d.cfg = filepath.Join(d.dir, "bridge.yaml")
	if err := os.WriteFile(d.cfg, []byte(fmt.Sprintf(`version: 1
keys: %s
cloud:
  urls: [ws://%s%s]
  bridge_id: %s
  token_file: %s
state_dir: %s
health:
  listen: off
encoders:
  - reader: %q
    name: Front desk
`, keyFile, d.proxy.Addr(), urls, d.boot.BridgeID, token, filepath.Join(d.dir, "state"), readerName)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.startBridge(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.mu.Lock()
		b, c, cb := d.bridge, d.cloud, d.cloudB
		d.mu.Unlock()
		b.stop(t)
		d.proxy.Close()
		c.stop(t)
		if cb != nil {
			cb.stop(t)
		}
	})
	d.waitEncoder()
	return d
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startCloud starts encoder-cloud serve on the desk's database and address
// and waits until it answers. It does not answer encode_credential until
// the attempt settles (--settle-wait 0, as Seam): the test polls, so a
// cloud killed mid-job never loses the attempt's id with a held answer.
func (d *desk) startCloud() error {
	p, err := d.startInstance(d.listen)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.cloud = p
	d.mu.Unlock()
	return nil
}

// startInstance starts encoder-cloud serve on the desk's database at addr
// and waits until it answers.
func (d *desk) startInstance(addr string) (*proc, error) {
	p, err := start(&d.log, "encoder-cloud", "serve", "--db", d.db, "--listen", addr,
		"--job-timeout", jobTimeout.String(), "--settle-wait", "0", "--metrics-listen", "off")
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := d.http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.kill()
			return nil, fmt.Errorf("encoder-cloud did not answer /healthz: %v\n%s", err, &d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *desk) startBridge() error {
	p, err := start(&d.log, "encoder-bridge", "run", "--config", d.cfg)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.bridge = p
	d.mu.Unlock()
	return nil
}

func (d *desk) killBridge() {
	d.mu.Lock()
	b := d.bridge
	d.mu.Unlock()
	b.kill()
}

func (d *desk) killCloud() {
	d.mu.Lock()
	c := d.cloud
	d.mu.Unlock()
	c.kill()
}

// call posts body to the cloud's API as an integrator would; ok is false
// when the cloud did not answer (it may be restarting).
func (d *desk) call(path string, body any) (status int, out map[string]any, ok bool) {
	j, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+d.api+path, bytes.NewReader(j))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+d.boot.APIKey)
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, nil, false
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		d.t.Fatalf("POST %s: status %d, body not JSON: %q", path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out, true
}

func (d *desk) mustCall(path string, body any) map[string]any {
	d.t.Helper()
	status, out, ok := d.call(path, body)
	if !ok || status != http.StatusOK {
		d.t.Fatalf("POST %s: status %d: %v\n%s", path, status, out, &d.log)
	}
	return out
}

func (d *desk) waitEncoder() {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range d.mustCall("/acs/encoders/list", map[string]any{})["acs_encoders"].([]any) {
			if m := e.(map[string]any); m["display_name"] == "Front desk" && len(m["errors"].([]any)) == 0 {
				d.encoderID = m["acs_encoder_id"].(string)
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("the cloud never listed the bridge's encoder online\n%s", &d.log)
}

func (d *desk) createCredential() string {
	now := time.Now()
	return d.mustCall("/acs/credentials/create", map[string]any{
		"access_method":            "card",
		"acs_user_id":              uuid.NewString(),
		"starts_at":                now.Add(-time.Hour).UTC().Format(time.RFC3339),
		"ends_at":                  now.Add(72 * time.Hour).UTC().Format(time.RFC3339),
		"allowed_acs_entrance_ids": []string{"0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"},
	})["acs_credential"].(map[string]any)["acs_credential_id"].(string)
}

// encode asks for an encode and returns the action attempt's id. The
// cloud may hold the answer until the attempt settles; either way the
// attempt is polled afterwards.
// ok is false when the cloud died before it answered: the integrator
// never learns the attempt's id.
func (d *desk) encode(credID string) (id string, ok bool) {
	status, out, ok := d.call("/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": d.encoderID, "acs_credential_id": credID})
	if !ok {
		return "", false
	}
	if status != http.StatusOK {
		d.t.Fatalf("encode_credential: status %d: %v", status, out)
	}
	return out["action_attempt"].(map[string]any)["action_attempt_id"].(string), true
}

// waitIssued stands in for settle when the attempt's id was lost: it
// waits until the credential is issued or the job's deadline has passed
// with the time a restarted bridge needs, so the card no longer changes.
func (d *desk) waitIssued(credID string, since time.Time) {
	limit := since.Add(jobTimeout + 15*time.Second)
	for time.Now().Before(limit) {
		status, out, ok := d.call("/acs/credentials/get", map[string]any{"acs_credential_id": credID})
		if ok && status == http.StatusOK && out["acs_credential"].(map[string]any)["is_issued"] == true {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settle polls the attempt until it is no longer pending, through cloud
// restarts, and returns it; it fails the test past the job's deadline
// plus the time a restarted bridge needs to hear the job again.
func (d *desk) settle(attemptID string, since time.Time) map[string]any {
	limit := since.Add(jobTimeout + 15*time.Second)
	for time.Now().Before(limit) {
		status, out, ok := d.call("/action_attempts/get", map[string]any{"action_attempt_id": attemptID})
		if ok && status == http.StatusOK {
			a := out["action_attempt"].(map[string]any)
			if a["status"] != "pending" {
				return a
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("attempt still pending %v after it began\n%s", time.Since(since), &d.log)
	return nil
}

func (d *desk) isIssued(credID string) bool {
	out := d.mustCall("/acs/credentials/get", map[string]any{"acs_credential_id": credID})
	return out["acs_credential"].(map[string]any)["is_issued"] == true
}

// oldCredential is what the card holds before the cell: a guest's
// earlier stay, written by the same keys.
func oldCredential(t *testing.T) cardfmt.Credential {
	c, err := bridge.ParseCredential([]byte(fmt.Sprintf(`{
  "credential_id": %q,
  "card_number": "100234",
  "card_function_type": "guest",
  "starts_at": "2026-11-23T15:00:00Z",
  "ends_at": "2036-11-26T11:00:00Z",
  "entrance_ids": ["0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"],
  "issue_sequence": 1
}`, uuid.NewString())))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// onSim runs f against card in an in-process simulated reader: writing
// the old record and scanning the card after a cell must not go through
// the desk under test.
func onSim(card chip.Card, ks *cardfmt.KeySet, f func(*bridge.Station) error) error {
	rc := sim.New()
	r := rc.Plug("sim")
	r.Insert(card)
	defer r.Remove()
	return f(&bridge.Station{Readers: rc, Keys: ks})
}

func writeOld(t *testing.T, card chip.Card, ks *cardfmt.KeySet, c cardfmt.Credential) {
	t.Helper()
	if err := onSim(card, ks, func(st *bridge.Station) error {
		_, err := st.Encode(context.Background(), "sim", c, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("write the old record: %v", err)
	}
}

// verdict is what a scan of the card says after a cell.
type verdict string

const (
	verdictOld      verdict = "old"
	verdictNew      verdict = "new"
	verdictNotValid verdict = "not valid"
)

func scanCard(t *testing.T, card chip.Card, ks *cardfmt.KeySet, old cardfmt.Credential, newID string) verdict {
	t.Helper()
	var v verdict
	if err := onSim(card, ks, func(st *bridge.Station) error {
		res, err := st.Scan(context.Background(), "sim", 5*time.Second)
		if err != nil {
			return err
		}
		switch {
		case !res.Valid():
			v = verdictNotValid
		case res.Record.ID == old.ID && res.Record.IssueSequence == old.IssueSequence:
			v = verdictOld
		case res.Record.ID.String() == newID:
			v = verdictNew
		default:
			return fmt.Errorf("the card holds a valid record that is neither the old nor the new one")
		}
		return nil
	}); err != nil {
		t.Fatalf("scan after the cell: %v", err)
	}
	return v
}

// writeCounter counts what changes the card's memory, per block: on
// Classic and Ultralight each successful UPDATE BINARY by block or page,
// the only way either layout writes; on DESFire each committed
// transaction (the record lands only with CommitTransaction, so a
// WriteData that was not committed changed nothing) and each
// ChangeKey, CreateApplication and CreateBackupDataFile. A job written
// twice shows as a block written more often than one encode writes it,
// even when the second pass writes the same bytes.
type writeCounter struct {
	chip.Card
	mu     sync.Mutex
	blocks map[int]int
}

func countWrites(c chip.Card) *writeCounter {
	return &writeCounter{Card: c, blocks: map[int]int{}}
}

// DESFire native commands that change the card, as wrapped in ISO 7816
// (CLA 90) by the layout, and the block keys they count under.
const (
	desfireCommit    = 0xC7
	desfireChangeKey = 0xC4
	desfireCreateApp = 0xCA
	desfireCreateBkp = 0xCB
	desfireKey       = 1 << 16 // above any Classic block or Ultralight page
)

func (w *writeCounter) Transmit(apdu []byte) ([]byte, error) {
	resp, err := w.Card.Transmit(apdu)
	if err != nil || len(apdu) < 4 {
		return resp, err
	}
	block := -1
	switch {
	case apdu[0] == 0xFF && apdu[1] == 0xD6 && bytes.HasSuffix(resp, []byte{0x90, 0x00}):
		block = int(apdu[2])<<8 | int(apdu[3])
	case apdu[0] == 0x90 && bytes.HasSuffix(resp, []byte{0x91, 0x00}):
		switch apdu[1] {
		case desfireCommit, desfireCreateApp, desfireCreateBkp:
			block = desfireKey * int(apdu[1])
		case desfireChangeKey:
			if len(apdu) > 5 {
				block = desfireKey*int(apdu[1]) + int(apdu[5])
			}
		}
	}
	if block >= 0 {
		w.mu.Lock()
		w.blocks[block]++
		w.mu.Unlock()
	}
	return resp, err
}

// Writes is how many times each block was written.
func (w *writeCounter) Writes() map[int]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.blocks)
}

// overwritten lists the blocks written more often than one encode
// writes them (at least once).
func overwritten(got, one map[int]int) []int {
	var out []int
	for b, n := range got {
		if n > max(one[b], 1) {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return out
}

func total(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// outcome is what a cell ended with.
type outcome struct {
	status, errType string
	card            verdict
	writes          map[int]int
}

func (o outcome) String() string {
	s := o.status
	if o.errType != "" {
		s += " " + o.errType
	}
	return fmt.Sprintf("%s, card %s, %d writes", s, o.card, total(o.writes))
}

// check asserts what every cell must hold.
func check(t *testing.T, d *desk, attempt map[string]any, credID string, card verdict, writes, oneEncode map[int]int) outcome {
	t.Helper()
	o := outcome{status: "answer lost", card: card, writes: writes}
	if attempt != nil {
		o.status = attempt["status"].(string)
	}
	switch o.status {
	case "answer lost":
	case "success":
	case "error":
		e, _ := attempt["error"].(map[string]any)
		o.errType, _ = e["type"].(string)
		if !slices.Contains(seam.ErrorTypes(seam.ActionEncodeCredential), protocol.ErrorType(o.errType)) {
			t.Errorf("the attempt failed with %q, not one of Seam's error types for an encode", o.errType)
		}
	default:
		t.Errorf("the attempt ended %q", o.status)
	}
	if b := overwritten(writes, oneEncode); len(b) > 0 {
		t.Errorf("blocks %v written more often for one job than one encode writes them (%v; one encode: %v)", b, writes, oneEncode)
	}
	if issued := d.isIssued(credID); issued != (card == verdictNew) {
		t.Errorf("is_issued %v but the card scans as %s", issued, card)
	}
	if o.status == "success" && card != verdictNew {
		t.Errorf("the attempt succeeded but the card scans as %s", card)
	}
	if o.status == "error" && card == verdictNew {
		// A job cut short after its last write looks at the card again
		// and reports the record it reads back.
		t.Errorf("the attempt failed (%s) but the card holds the new record", o.errType)
	}
	if protocol.ErrorType(o.errType) == protocol.ErrorEncodingInterrupted && total(writes) == 0 && card != verdictOld {
		t.Errorf("encoding_interrupted without a write, and the card is %s, not untouched", card)
	}
	if t.Failed() {
		t.Logf("desk log:\n%s", strings.TrimSpace(d.log.String()))
	}
	return o
}
