package load_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/encoder-bridge/encoder-bridge/bridge"
	"github.com/encoder-bridge/encoder-bridge/cardfmt"
	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest/pcscd"
	"github.com/encoder-bridge/encoder-bridge/hwtest/vpcd"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
	"github.com/encoder-bridge/encoder-bridge/reader/sim"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

var (
	bins = map[string]string{}
	// daemon is the private pcscd of the whole run: libpcsclite keeps the
	// socket of the process's first PC/SC call, so it is started and used
	// before any test.
	daemon    *pcscd.Daemon
	daemonErr error
)

// TestMain builds encoder-cloud and encoder-bridge and starts the private
// pcscd.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "encoder-bridge-load")
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
	daemon, daemonErr = pcscd.New(pcscd.Options{Entries: 1, Name: "Load PCD"})
	if daemonErr == nil {
		daemonErr = daemon.Use()
	}
	code := m.Run()
	if daemon != nil {
		if err := daemon.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// privatePcscd is the run's pcscd with n vpcd entries (2n readers).
func privatePcscd(t *testing.T, entries int) *pcscd.Daemon {
	t.Helper()
	if daemonErr != nil {
		if errors.Is(daemonErr, pcscd.ErrUnavailable) && os.Getenv("CI") == "" {
			t.Skipf("%v", daemonErr)
		}
		t.Fatalf("%v", daemonErr)
	}
	if len(daemon.Readers()) != 2*entries {
		if err := daemon.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := daemon.Reconfigure(entries); err != nil {
			t.Fatal(err)
		}
		if err := daemon.Start(); err != nil {
			t.Fatal(err)
		}
	}
	return daemon
}

// proc is one run of a built binary, its output kept for failures.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func start(log io.Writer, name string, args ...string) (*proc, error) {
	cmd := exec.Command(bins[name], args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	return p, nil
}

// kill is SIGKILL: a crash or a power cut at the front desk.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// stop is SIGINT, the clean stop, bounded.
func (p *proc) stop() error {
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
		return nil
	case <-time.After(30 * time.Second):
		p.kill()
		return fmt.Errorf("%s did not stop on SIGINT", filepath.Base(p.cmd.Path))
	}
}

// proxy is a loopback TCP proxy between the bridge and the cloud; cut
// drops every connection through it, as when a network path dies.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target}
	go p.accept()
	return p, nil
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) Close() {
	p.ln.Close()
	p.cut()
}

func (p *proxy) cut() {
	p.mu.Lock()
	cs := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(u, c)
		go pipe(c, u)
	}
}

// desk is encoder-cloud serve, the proxy and encoder-bridge run through
// it with one encoder per reader.
type desk struct {
	t      *testing.T
	dir    string
	listen string
	boot   cloud.Bootstrap
	keys   *cardfmt.KeySet
	proxy  *proxy
	cfg    string
	log    syncbuf.Buffer
	http   http.Client

	mu     sync.Mutex
	cloud  *proc
	bridge *proc

	// encoders are the cloud's ids of the encoders, in reader order.
	encoders []string
}

// jobTimeout is the cloud's job timeout: long enough for a job caught by
// a bridge restart to finish after it.
const jobTimeout = 30 * time.Second

func newDesk(t *testing.T, readers []vpcd.Reader) *desk {
	t.Helper()
	d := &desk{t: t, dir: t.TempDir(), http: http.Client{Timeout: 15 * time.Second}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.listen = ln.Addr().String()
	ln.Close()
	db := filepath.Join(d.dir, "cloud.db")
	bootFile := filepath.Join(d.dir, "bootstrap.json")
	if out, err := exec.Command(bins["encoder-cloud"], "init", "--db", db, "--out", bootFile).CombinedOutput(); err != nil {
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
	p, err := start(&d.log, "encoder-cloud", "serve", "--db", db, "--listen", d.listen,
		"--job-timeout", jobTimeout.String(), "--metrics-listen", "off")
	if err != nil {
		t.Fatal(err)
	}
	d.cloud = p
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := d.http.Get("http://" + d.listen + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("encoder-cloud did not answer /healthz: %v\n%s", err, &d.log)
		}
	}
	if d.proxy, err = newProxy(d.listen); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.proxy.Close)
	var enc strings.Builder
	for i, r := range readers {
		fmt.Fprintf(&enc, "  - reader: %q\n    name: Desk %d\n", r.Name, i+1)
	}
	d.cfg = filepath.Join(d.dir, "bridge.yaml")
	if err := os.WriteFile(d.cfg, []byte(fmt.Sprintf(`version: 1
keys: %s
cloud:
  url: ws://%s
  bridge_id: %s
  token_file: %s
state_dir: %s
health:
  listen: off
encoders:
%s`, keyFile, d.proxy.Addr(), d.boot.BridgeID, token, filepath.Join(d.dir, "state"), enc.String())), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

// startBridge starts encoder-bridge run; the environment points it at
// the private pcscd (Use).
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

func (d *desk) stopBridge() error {
	d.mu.Lock()
	b := d.bridge
	d.mu.Unlock()
	return b.stop()
}

// restartBridge is SIGKILL then a new encoder-bridge run on the same
// state directory.
func (d *desk) restartBridge() error {
	d.mu.Lock()
	b := d.bridge
	d.mu.Unlock()
	b.kill()
	return d.startBridge()
}

// call posts body to the cloud's API as an integrator would; ok is false
// when the cloud did not answer.
func (d *desk) call(path string, body any) (status int, out map[string]any, ok bool) {
	j, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+d.listen+path, bytes.NewReader(j))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+d.boot.APIKey)
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, nil, false
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(raw, &out) != nil {
		return resp.StatusCode, nil, false
	}
	return resp.StatusCode, out, true
}

// waitEncoders waits until the cloud lists every encoder online and
// keeps their ids in reader order.
func (d *desk) waitEncoders(n int) {
	d.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		status, out, ok := d.call("/acs/encoders/list", map[string]any{})
		if !ok || status != http.StatusOK {
			continue
		}
		ids := make([]string, n)
		online := 0
		for _, e := range out["acs_encoders"].([]any) {
			m := e.(map[string]any)
			var i int
			if _, err := fmt.Sscanf(m["display_name"].(string), "Desk %d", &i); err == nil && i >= 1 && i <= n && len(m["errors"].([]any)) == 0 {
				ids[i-1] = m["acs_encoder_id"].(string)
				online++
			}
		}
		if online == n {
			d.encoders = ids
			return
		}
	}
	d.t.Fatalf("the cloud never listed the bridge's %d encoders online\n%s", n, &d.log)
}

// settle polls the attempt until it is no longer pending; "" when it
// still is past the job's deadline and a bridge restart.
func (d *desk) settle(attemptID string, since time.Time) map[string]any {
	for limit := since.Add(jobTimeout + 30*time.Second); time.Now().Before(limit); time.Sleep(100 * time.Millisecond) {
		status, out, ok := d.call("/action_attempts/get", map[string]any{"action_attempt_id": attemptID})
		if ok && status == http.StatusOK {
			if a := out["action_attempt"].(map[string]any); a["status"] != "pending" {
				return a
			}
		}
	}
	return nil
}

// isIssued is the credential's is_issued; ok false when the cloud did
// not say.
func (d *desk) isIssued(credID string) (issued, ok bool) {
	status, out, ok := d.call("/acs/credentials/get", map[string]any{"acs_credential_id": credID})
	if !ok || status != http.StatusOK {
		return false, false
	}
	return out["acs_credential"].(map[string]any)["is_issued"] == true, true
}

// sdk is conformance/load-sdk.mjs: Seam's JavaScript SDK taking one
// command per line.
type sdk struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr syncbuf.Buffer
	next   atomic.Int64

	mu      sync.Mutex
	waiting map[int64]chan sdkAnswer
	done    chan struct{}
}

type sdkAnswer struct {
	ID         int64   `json:"id"`
	Credential string  `json:"credential"`
	Start      float64 `json:"start"` // ms since the Unix epoch
	End        float64 `json:"end"`
	Status     string  `json:"status"`
	Attempt    string  `json:"attempt"`
	Error      string  `json:"error"`
	Scanned    *string `json:"scanned"`
}

// startSDK runs the SDK against the desk's cloud. node and the SDK must
// be installed (npm ci in conformance/); with CI set their absence fails.
func startSDK(t *testing.T, d *desk) *sdk {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "" {
			t.Skipf(format, args...)
		}
		t.Fatalf(format, args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is needed to run Seam's JavaScript SDK: %v", err)
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "conformance"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@seamapi", "http")); err != nil {
		missing("Seam's SDK is not installed: run npm ci in conformance/ (make sdk): %v", err)
	}
	s := &sdk{waiting: map[int64]chan sdkAnswer{}, done: make(chan struct{})}
	s.cmd = exec.Command(node, "load-sdk.mjs")
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(),
		"LOAD_ENDPOINT=http://"+d.listen, "LOAD_API_KEY="+d.boot.APIKey, "LOAD_ACS_SYSTEM_ID="+d.boot.AcsSystemID,
		fmt.Sprintf("LOAD_SDK_TIMEOUT_MS=%d", (jobTimeout+60*time.Second).Milliseconds()))
	s.cmd.Stderr = &s.stderr
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var a sdkAnswer
			if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
				fmt.Fprintf(&s.stderr, "load-sdk.mjs printed %q: %v\n", sc.Text(), err)
				continue
			}
			s.mu.Lock()
			ch := s.waiting[a.ID]
			delete(s.waiting, a.ID)
			s.mu.Unlock()
			if ch != nil {
				ch <- a
			}
		}
	}()
	t.Cleanup(func() {
		s.stdin.Close()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
		}
		s.cmd.Wait()
	})
	return s
}

// do sends one command and waits for its answer; ok is false when the
// SDK process died.
func (s *sdk) do(op, encoder, credential string) (sdkAnswer, bool) {
	id := s.next.Add(1)
	ch := make(chan sdkAnswer, 1)
	s.mu.Lock()
	s.waiting[id] = ch
	s.mu.Unlock()
	cmd := map[string]any{"id": id, "op": op, "encoder": encoder}
	if credential != "" {
		cmd["credential"] = credential
	}
	line, _ := json.Marshal(cmd)
	s.mu.Lock()
	_, err := s.stdin.Write(append(line, '\n'))
	s.mu.Unlock()
	if err != nil {
		return sdkAnswer{}, false
	}
	select {
	case a := <-ch:
		return a, true
	case <-s.done:
		return sdkAnswer{}, false
	}
}

func msTime(ms float64) time.Time { return time.Unix(0, int64(ms*float64(time.Millisecond))) }

// writeCounter counts the card's successful UPDATE BINARY commands per
// block (Classic) or page (Ultralight), the only way either layout
// writes: a job written twice shows as a block written more often than
// one encode writes it, even when the second pass writes the same bytes.
type writeCounter struct {
	chip.Card
	mu     sync.Mutex
	blocks map[int]int
}

func countWrites(c chip.Card) *writeCounter {
	return &writeCounter{Card: c, blocks: map[int]int{}}
}

func (w *writeCounter) Transmit(apdu []byte) ([]byte, error) {
	resp, err := w.Card.Transmit(apdu)
	if err == nil && len(apdu) >= 4 && apdu[0] == 0xFF && apdu[1] == 0xD6 && bytes.HasSuffix(resp, []byte{0x90, 0x00}) {
		w.mu.Lock()
		w.blocks[int(apdu[2])<<8|int(apdu[3])]++
		w.mu.Unlock()
	}
	return resp, err
}

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

// onSim runs f against card in an in-process simulated reader: scanning
// a card after its job must not go through the desk under test.
func onSim(card chip.Card, ks *cardfmt.KeySet, f func(*bridge.Station) error) error {
	rc := sim.New()
	r := rc.Plug("sim")
	r.Insert(card)
	defer r.Remove()
	return f(&bridge.Station{Readers: rc, Keys: ks})
}

// cardRecord is the credential id of the valid record on card, "" when
// it holds none.
func cardRecord(card chip.Card, ks *cardfmt.KeySet) (string, error) {
	var id string
	err := onSim(card, ks, func(st *bridge.Station) error {
		res, err := st.Scan(context.Background(), "sim", 5*time.Second)
		if err != nil {
			return err
		}
		if res.Valid() {
			id = res.Record.ID.String()
		}
		return nil
	})
	return id, err
}

// oneEncode is what encoding a blank card of kind writes, on the
// simulated reader with the code the bridge runs.
func oneEncode(t *testing.T, kind string, ks *cardfmt.KeySet) map[int]int {
	t.Helper()
	card, err := chip.New(kind, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := countWrites(card)
	if err := onSim(w, ks, func(st *bridge.Station) error {
		_, err := st.Encode(context.Background(), "sim", newCredential(t), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("baseline encode of %s: %v", kind, err)
	}
	return w.Writes()
}

// holder keeps a card on an encoder as a guest's card lies there: when
// pcscd loses it (a restart closes vpcd's connections) it puts it back,
// until remove.
type holder struct {
	slot    hwtest.Slot
	card    chip.Card
	stop    chan struct{}
	stopped chan struct{}
	putBack atomic.Int32
	apdus   atomic.Int64
}

func hold(slot hwtest.Slot, card chip.Card) *holder {
	h := &holder{slot: slot, card: card, stop: make(chan struct{}), stopped: make(chan struct{})}
	go h.run()
	return h
}

func (h *holder) run() {
	defer close(h.stopped)
	for first := true; ; first = false {
		if !first {
			h.putBack.Add(1)
		}
		s, err := vpcd.Insert(context.Background(), h.slot.Addr, h.card)
		if err != nil {
			// vpcd is not listening: pcscd is restarting.
			select {
			case <-h.stop:
				return
			case <-time.After(100 * time.Millisecond):
				continue
			}
		}
		select {
		case <-h.stop:
			s.Remove()
			h.apdus.Add(int64(s.APDUs()))
			return
		case <-s.Done():
			h.apdus.Add(int64(s.APDUs()))
		}
	}
}

// remove takes the card off the encoder.
func (h *holder) remove() {
	close(h.stop)
	<-h.stopped
}

// waitCard waits until pcscd reports the card in (present) or the reader
// empty, through a pcscd restart.
func waitCard(reader string, present bool, atr []byte) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := hwtest.WaitCard(reader, present, atr, 5*time.Second)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newCredential(t *testing.T) cardfmt.Credential {
	t.Helper()
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
