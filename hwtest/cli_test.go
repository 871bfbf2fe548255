package hwtest_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

// bin builds the named command once per test binary.
var built = map[string]string{}

func bin(t testing.TB, name string) string {
	t.Helper()
	if p, ok := built[name]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "encoder-bridge-bin")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	out, err := exec.Command("go", "build", "-o", p, "../cmd/"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	built[name] = p
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, p := range built {
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}

func runBin(t testing.TB, path string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

// TestCLI runs the encoder-bridge binary as a person would.
func TestCLI(t *testing.T) {
	slot := hwtest.AcquireSlot(t)
	eb := bin(t, "encoder-bridge")
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	cred := filepath.Join(dir, "cred.json")
	os.WriteFile(cred, []byte(credJSON), 0o600)

	if code, _, stderr := runBin(t, eb, "keys", "init", "--out", keys); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	code, _, stderr := runBin(t, eb, "scan", "--keys", keys, "--reader", slot.Reader, "--json")
	if code != 1 || !strings.Contains(stderr, "no_credential_on_encoder") {
		t.Fatalf("scan with no card: %d %s", code, stderr)
	}

	card, _ := chip.New("mifare_classic_1k", nil)
	hwtest.InsertCard(t, slot, card)
	code, out, stderr := runBin(t, eb, "readers", "--json")
	if code != 0 || !strings.Contains(out, slot.Reader) {
		t.Fatalf("readers: %d %s %s", code, out, stderr)
	}
	if code, out, stderr := runBin(t, eb, "encode", "--keys", keys, "--reader", slot.Reader, "--credential", cred, "--wait", "5s"); code != 0 {
		t.Fatalf("encode: %d %s %s", code, out, stderr)
	}
	code, out, stderr = runBin(t, eb, "scan", "--keys", keys, "--reader", slot.Reader, "--json")
	if code != 0 {
		t.Fatalf("scan: %d %s", code, stderr)
	}
	var res struct {
		Valid      bool   `json:"valid"`
		Technology string `json:"technology"`
		CardNumber string `json:"card_number"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Valid || res.Technology != "mifare_classic_1k" || res.CardNumber != "100234" {
		t.Fatalf("scan output %s (%v)", out, err)
	}

	// A key file others can read is refused, with the fix in the message.
	os.Chmod(keys, 0o644)
	code, _, stderr = runBin(t, eb, "scan", "--keys", keys, "--reader", slot.Reader)
	if code != 1 || !strings.Contains(stderr, "chmod 600") {
		t.Fatalf("scan with an open key file: %d %s", code, stderr)
	}
}
