package hwtest_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/encoder-bridge/encoder-bridge/bridge/journal"
	"github.com/encoder-bridge/encoder-bridge/cloud/cloudtest"
	"github.com/encoder-bridge/encoder-bridge/hwtest"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
	"github.com/encoder-bridge/encoder-bridge/protocol"
	"github.com/encoder-bridge/encoder-bridge/reader/sim/chip"
)

const stopToken = "hwtest-stop-token-7"

// heldCard holds the first card write (UPDATE BINARY) until released,
// and says when it is held: the bridge is then mid-encode.
type heldCard struct {
	chip.Card
	writes  atomic.Int32
	held    chan struct{}
	release chan struct{}
}

func (c *heldCard) Transmit(apdu []byte) ([]byte, error) {
	if len(apdu) >= 2 && apdu[0] == 0xFF && apdu[1] == 0xD6 && c.writes.Add(1) == 1 {
		close(c.held)
		<-c.release
	}
	return c.Card.Transmit(apdu)
}

// bridgeProc is the encoder-bridge binary running against a fake cloud.
type bridgeProc struct {
	cmd    *exec.Cmd
	log    *syncbuf.Buffer
	exited chan error
}

func startBridge(t *testing.T, eb, cfg string) *bridgeProc {
	t.Helper()
	p := &bridgeProc{log: &syncbuf.Buffer{}, exited: make(chan error, 1)}
	// No shutdown timeout to end a stop: only the stop itself or a
	// second signal may.
	p.cmd = exec.Command(eb, "run", "--config", cfg, "--shutdown-timeout", "1h")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// waitLog waits until the bridge has logged want.
func (p *bridgeProc) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the bridge never logged %q:\n%s", want, p.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait returns the exit code once the process has ended.
func (p *bridgeProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		t.Fatalf("the bridge did not exit:\n%s", p.log)
	}
	return p.cmd.ProcessState.ExitCode()
}

func encodeJobFor(id string, encoder protocol.EncoderID) *protocol.Job {
	seq := uint32(4)
	return &protocol.Job{JobID: id, ActionAttemptID: "aa-" + id, Kind: protocol.JobEncode, EncoderID: encoder,
		Deadline: time.Now().Add(time.Minute), Credential: &protocol.Credential{
			CredentialID: "6f1c2d8e-3a4b-4c5d-9e6f-708192a3b4c5", CardNumber: "100234", CardFunctionType: "guest",
			StartsAt: "2026-01-01T15:00:00Z", EndsAt: "2036-11-26T11:00:00Z", IssueSequence: &seq}}
}

func resultsOf(cc *cloudtest.FakeConn, msgs []*protocol.Message, id string) []protocol.Result {
	var out []protocol.Result
	for _, r := range cc.Hello.Results {
		if r.JobID == id {
			out = append(out, r)
		}
	}
	for _, m := range msgs {
		if m.Type == protocol.TypeResult && m.Result.JobID == id {
			out = append(out, *m.Result)
		}
	}
	return out
}

// TestStopMidEncode stops the encoder-bridge binary with SIGTERM while it
// writes a card on a vpcd encoder. Once: the write completes, its result
// reaches the cloud, a job offered meanwhile is refused unacked and runs
// in the next process, and the link closes with 1001. Twice: the process
// exits at once, the journal opens clean with the job writing, and the
// next process looks at the card: it holds no record yet, so the job
// writes it again and reports it read back. Either way the job ends
// exactly once.
func TestStopMidEncode(t *testing.T) {
	for _, twice := range []bool{false, true} {
		t.Run(map[bool]string{false: "graceful", true: "second signal"}[twice], func(t *testing.T) {
			slot := hwtest.AcquireSlot(t)
			c, _ := chip.New("mifare_classic_1k", nil)
			card := &heldCard{Card: c, held: make(chan struct{}), release: make(chan struct{})}
			released := false
			release := func() {
				if !released {
					released = true
					close(card.release)
				}
			}
			t.Cleanup(release)
			hwtest.InsertCard(t, slot, card)

			cloud := cloudtest.NewFakeCloud(t, stopToken)
			eb := bin(t, "encoder-bridge")
			dir := t.TempDir()
			keys := filepath.Join(dir, "keys.json")
			if code, _, stderr := runBin(t, eb, "keys", "init", "--out", keys); code != 0 {
				t.Fatalf("keys init: %s", stderr)
			}
			token := filepath.Join(dir, "bridge.token")
			os.WriteFile(token, []byte(stopToken+"\n"), 0o600)
			state := filepath.Join(dir, "state")
			cfg := filepath.Join(dir, "bridge.yaml")
			os.WriteFile(cfg, []byte(fmt.Sprintf("version: 1\nkeys: %s\nlog:\n  level: debug\ncloud:\n  url: %s\n  bridge_id: desk-stop\n  token_file: %s\nstate_dir: %s\nhealth:\n  listen: %s\nencoders:\n  - reader: %q\n",
				keys, cloud.URL(), token, state, freeAddr(t), slot.Reader)), 0o600)

			p := startBridge(t, eb, cfg)
			cc := cloud.Next(t)
			if len(cc.Hello.Encoders) != 1 {
				t.Fatalf("hello encoders %+v", cc.Hello.Encoders)
			}
			enc := cc.Hello.Encoders[0].ID
			cc.Job(encodeJobFor("job-1", enc))
			select {
			case <-card.held:
			case <-time.After(time.Minute):
				t.Fatalf("the bridge never wrote the card:\n%s", p.log)
			}

			// Mid-encode: stop. A job offered now is refused, not acked.
			p.cmd.Process.Signal(syscall.SIGTERM)
			p.waitLog(t, "stopping")
			p.waitLog(t, "stopping: no new jobs")
			cc.Job(&protocol.Job{JobID: "job-2", ActionAttemptID: "aa-job-2", Kind: protocol.JobScan, EncoderID: enc, Deadline: time.Now().Add(time.Minute)})
			if m := cc.Expect(t, "job-2 refused", func(m *protocol.Message) bool {
				return m.Type == protocol.TypeError && m.Error.JobID == "job-2"
			}); m.Error.Code != protocol.CodeStopping {
				t.Fatalf("job-2 refused with %+v", m.Error)
			}

			var first []*protocol.Message
			if twice {
				// The write is still held: only the second signal can end
				// the process now.
				second := time.Now()
				p.cmd.Process.Signal(syscall.SIGTERM)
				if code := p.wait(t); code == 0 {
					t.Fatalf("a forced stop exited 0:\n%s", p.log)
				}
				t.Logf("second SIGTERM to exit: %v", time.Since(second))
				release()
				<-cc.Closed
				first = cc.Collect(0)
				if rs := resultsOf(cc, first, "job-1"); len(rs) != 0 {
					t.Fatalf("job-1 reported by a process stopped mid-write: %+v", rs)
				}
				j, err := journal.Open(state, journal.Options{})
				if err != nil {
					t.Fatalf("the journal after a forced stop: %v", err)
				}
				if r := j.Reset(); r != nil {
					t.Fatalf("the journal was damaged by a forced stop: %+v", r)
				}
				if e, err := j.Get("job-1"); err != nil || e.State != journal.StateWriting {
					t.Fatalf("job-1 in the journal: %+v, %v", e, err)
				}
				j.Close()
			} else {
				released := time.Now()
				release()
				r := cc.ExpectResult(t, "job-1")
				if r.Error != nil || r.Card == nil || !r.Card.Valid {
					t.Fatalf("job-1: %+v / %+v", r.Card, r.Error)
				}
				if code := p.wait(t); code != 0 {
					t.Fatalf("exit %d after a graceful stop:\n%s", code, p.log)
				}
				t.Logf("write released to exit: %v", time.Since(released))
				<-cc.Closed
				if cc.CloseCode != websocket.CloseGoingAway {
					t.Fatalf("the cloud saw close code %d, want %d:\n%s", cc.CloseCode, websocket.CloseGoingAway, p.log)
				}
				first = append([]*protocol.Message{{Type: protocol.TypeResult, Result: r}}, cc.Collect(0)...)
			}
			for _, m := range first {
				if m.Type == protocol.TypeAck && m.Ack.JobID == "job-2" {
					t.Fatal("job-2 acked during the stop")
				}
			}

			// The next process: job-1 ended exactly once (after a forced
			// stop the next process settles it, so it is still active in
			// the hello); the cloud offers job-2 again, since the hello
			// does not hold it, and it runs, after job-1 on the encoder.
			p2 := startBridge(t, eb, cfg)
			c2 := cloud.Next(t)
			if slices.Contains(c2.Hello.ActiveJobs, "job-1") != twice || slices.Contains(c2.Hello.ActiveJobs, "job-2") {
				t.Fatalf("active jobs after the stop: %v", c2.Hello.ActiveJobs)
			}
			c2.Job(&protocol.Job{JobID: "job-2", ActionAttemptID: "aa-job-2", Kind: protocol.JobScan, EncoderID: enc, Deadline: time.Now().Add(time.Minute)})
			// Every message is kept: job-1's result may come first.
			var seen []*protocol.Message
			keep := func(ok func(*protocol.Message) bool) func(*protocol.Message) bool {
				return func(m *protocol.Message) bool { seen = append(seen, m); return ok(m) }
			}
			c2.Expect(t, "job-2 acked", keep(func(m *protocol.Message) bool { return m.Type == protocol.TypeAck && m.Ack.JobID == "job-2" }))
			scan := c2.Expect(t, "job-2's result", keep(func(m *protocol.Message) bool {
				return m.Type == protocol.TypeResult && m.Result.JobID == "job-2"
			})).Result
			p2.cmd.Process.Signal(syscall.SIGTERM)
			if code := p2.wait(t); code != 0 {
				t.Fatalf("second process exit %d:\n%s", code, p2.log)
			}
			<-c2.Closed
			all := append(resultsOf(cc, first, "job-1"), resultsOf(c2, append(seen, c2.Collect(0)...), "job-1")...)
			if len(all) != 1 {
				t.Fatalf("job-1 ended %d times: %+v\nfirst log:\n%s\nsecond log:\n%s", len(all), all, p.log, p2.log)
			}
			if twice {
				// The write held when the process died is the first of a
				// fresh card's encode: the card still holds no record, so
				// the next process writes it again and reads it back.
				if all[0].Error != nil || all[0].Card == nil || !all[0].Card.Valid {
					t.Fatalf("job-1 after a forced stop: %+v / %+v", all[0].Card, all[0].Error)
				}
			}
			if scan.Error != nil || scan.Card == nil || !scan.Card.Valid || scan.Card.Credential == nil || scan.Card.Credential.CardNumber != "100234" {
				t.Fatalf("the card after the stop: %+v / %+v", scan.Card, scan.Error)
			}
		})
	}
}
