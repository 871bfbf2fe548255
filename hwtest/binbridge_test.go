package hwtest_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
)

// binBridge is the encoder-bridge binary running "run" against a test
// cloud, with a site key file of its own, offering slot's reader as
// "Front desk" and serving its status page on a free loopback port.
type binBridge struct {
	Keys string          // the site key file
	Page string          // the status page's URL
	Log  *syncbuf.Buffer // its standard output and error
	stop func()
}

// startBinBridge starts the bridge at log level ("info" when empty). It is
// stopped with SIGINT when the test ends, if Stop was not called first.
func startBinBridge(t *testing.T, env *cloudtest.Env, slot hwtest.Slot, level string) *binBridge {
	t.Helper()
	return startBinBridgeWith(t, env, bridgeOptions{Level: level,
		Config: fmt.Sprintf("encoders:\n  - reader: %q\n    name: Front desk\n", slot.Reader)})
}

// bridgeOptions vary the bridge startBinBridgeWith runs.
type bridgeOptions struct {
	Level  string   // log level; "info" when empty
	Config string   // appended to the configuration (encoders, exclude_readers)
	Env    []string // the process's environment; empty: this one's
}

// startBinBridgeWith starts the bridge binary with o. It is stopped with SIGINT
// when the test ends, if Stop was not called first.
func startBinBridgeWith(t testing.TB, env *cloudtest.Env, o bridgeOptions) *binBridge {
	t.Helper()
	level := o.Level
	if level == "" {
		level = "info"
	}
	eb := bin(t, "encoder-bridge")
	dir := t.TempDir()
	b := &binBridge{Keys: filepath.Join(dir, "keys.json"), Log: &syncbuf.Buffer{}}
	if code, _, stderr := runBin(t, eb, "keys", "init", "--out", b.Keys); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	token := filepath.Join(dir, "bridge.token")
	if err := os.WriteFile(token, []byte(env.BridgeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	b.Page = "http://" + addr + "/"
	cfg := filepath.Join(dir, "bridge.yaml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 1
keys: %s
log:
  level: %s
cloud:
  url: %s
  bridge_id: %s
  token_file: %s
state_dir: %s
health:
  listen: %s
`, b.Keys, level, env.WebsocketURL(), env.BridgeID, token, filepath.Join(dir, "state"), addr)+o.Config), 0o600)
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(eb, "run", "--config", cfg)
	cmd.Env = o.Env
	cmd.Stdout, cmd.Stderr = b.Log, b.Log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Error("the bridge did not stop on SIGINT")
		}
	}
	t.Cleanup(b.stop)
	return b
}

// Stop sends SIGINT and waits for the bridge to exit.
func (b *binBridge) Stop() { b.stop() }
