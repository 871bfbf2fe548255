package hwtest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/cloud/clock"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// chromium finds Debian's headless browser: a skip on a developer's PC
// without it, a failure in CI.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the status page test needs chromium in CI: scripts/setup-debian.sh installs it")
	}
	t.Skip("no chromium: apt-get install chromium")
	return ""
}

// browser drives headless Chromium, one process per page load, each with
// its own profile so that concurrent runs never share one.
type browser struct {
	t    *testing.T
	path string
	out  string // where screenshots go
}

func (b *browser) run(args ...string) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + b.t.TempDir(), "--window-size=1100,900"}
	cmd := exec.CommandContext(ctx, b.path, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

// dom loads url and returns the DOM as rendered.
func (b *browser) dom(url string) string { return string(b.run("--dump-dom", url)) }

// screenshot saves url as name.png in the test's output directory.
func (b *browser) screenshot(url, name string) {
	b.t.Helper()
	p := filepath.Join(b.out, name+".png")
	b.run("--screenshot="+p, url)
	st, err := os.Stat(p)
	if err != nil || st.Size() == 0 {
		b.t.Fatalf("screenshot %s: %v", p, err)
	}
	b.t.Logf("screenshot: %s", p)
}

// outputDir is where the screenshots stay: $STATUS_PAGE_OUT when set,
// else the test's artifact directory (kept with go test -artifacts).
func outputDir(t *testing.T) string {
	if d := os.Getenv("STATUS_PAGE_OUT"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// waitPage polls the page over plain HTTP until it holds want: the
// bridge updates it asynchronously (card watchers, link backoff).
func waitPage(t *testing.T, url, want string, bridgeLog fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if last = string(b); strings.Contains(last, want) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the page never showed %q; last:\n%s\nbridge log:\n%s", want, last, bridgeLog)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func mustContain(t *testing.T, what, dom string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(dom, w) {
			t.Errorf("%s: the rendered page lacks %q", what, w)
		}
	}
	if t.Failed() {
		t.Fatalf("%s: rendered DOM:\n%s", what, dom)
	}
}

// TestStatusPage runs the bridge binary against the test cloud with a
// virtual card on a vpcd encoder, and checks the status page as Chromium
// renders it: card on, after an encode; card taken off; link broken.
func TestStatusPage(t *testing.T) {
	b := &browser{t: t, path: chromium(t), out: outputDir(t)}
	slot := hwtest.AcquireSlot(t)
	card, _ := chip.New("mifare_classic_1k", nil)
	vs := hwtest.InsertCard(t, slot, card)

	env := cloudtest.New(t, cloudtest.Options{Config: func(c *cloud.Config) { c.Clock = clock.Real{} }})
	br := startBinBridge(t, env, slot, "")
	log := br.Log
	page := br.Page

	// Linked, a card on the encoder, and one encode done. The card shows
	// as soon as the reader is seen, which may be before the cloud
	// welcomed the hello that lists the encoder: wait for both.
	waitPage(t, page, `data-card="present"`, log)
	waitPage(t, page, `id="link" data-state="up"`, log)
	encoderID := ""
	for _, e := range env.MustCall("/acs/encoders/list", map[string]any{})["acs_encoders"].([]any) {
		if m := e.(map[string]any); m["display_name"] == "Front desk" {
			encoderID = m["acs_encoder_id"].(string)
		}
	}
	if encoderID == "" {
		t.Fatalf("the cloud lists no encoder; bridge log:\n%s", log)
	}
	now := time.Now()
	cred := env.CreateCredential(map[string]any{
		"starts_at": now.Add(-time.Hour).UTC().Format(time.RFC3339),
		"ends_at":   now.Add(72 * time.Hour).UTC().Format(time.RFC3339),
	})
	env.MustCall("/acs/encoders/encode_credential", map[string]any{"acs_encoder_id": encoderID, "acs_credential_id": cred["acs_credential_id"]})
	waitPage(t, page, `data-outcome="ok"`, log)

	dom := b.dom(page)
	mustContain(t, "card on", dom,
		`id="verdict" class="good" data-ready="true"`, `Ready to encode`,
		`id="link" data-state="up"`,
		`data-card="present"`, `card on the encoder`,
		`<td class="name">Front desk</td>`, slot.Reader,
		`data-outcome="ok"`, `encode done`,
		`class="key-id"`, `id="no-problems"`,
		`http-equiv="refresh"`)
	for _, secret := range []string{env.BridgeToken, fmt.Sprintf("%X", card.UID()), fmt.Sprintf("%x", card.UID())} {
		if strings.Contains(dom, secret) {
			t.Fatalf("the page shows %q", secret)
		}
	}
	b.screenshot(page, "1-card-on")

	// The card is taken off the encoder.
	if err := vs.Remove(); err != nil {
		t.Fatal(err)
	}
	waitPage(t, page, `data-card="absent"`, log)
	dom = b.dom(page)
	mustContain(t, "card off", dom, `data-card="absent"`, `no card`, `id="link" data-state="up"`, `data-outcome="ok"`)
	b.screenshot(page, "2-card-off")

	// The cloud goes away: the link breaks and the page says what to do.
	env.HTTP.CloseClientConnections()
	env.Server.Close()
	env.HTTP.Close()
	waitPage(t, page, `data-state="down"`, log)
	waitPage(t, page, `class="problem"`, log)
	dom = b.dom(page)
	mustContain(t, "link down", dom,
		`id="verdict" class="bad" data-ready="false"`, `not connected to the cloud`,
		`id="link" data-state="down"`, `not connected`,
		`<td class="where">link</td>`, `encoder-bridge doctor`)
	b.screenshot(page, "3-link-down")
}
