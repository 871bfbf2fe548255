//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/encoder-bridge/encoder-bridge/cloud"
	"github.com/encoder-bridge/encoder-bridge/internal/syncbuf"
)

// A flood of connections from one address that promise a body and never
// send it, some with a key and some without, against a server allowed 256
// file descriptors: /healthz from another address answers throughout,
// every flood connection is closed by the server, and SIGTERM stops it
// cleanly. Without the limits the server ran out of descriptors
// ("accept4: too many open files") and /healthz stopped answering
// (issue 10).
func TestFloodFromOneSource(t *testing.T) {
	dir := t.TempDir()
	boot := filepath.Join(dir, "boot.json")
	cmd := exec.Command("/bin/sh", "-c", `ulimit -n 256 && exec "$0" "$@"`, os.Args[0],
		"serve", "--db", filepath.Join(dir, "c.db"), "--listen", "127.0.0.1:0", "--bootstrap", boot,
		"--max-conns", "128", "--max-conns-per-source", "32", "--read-timeout", "2s")
	cmd.Env = append(os.Environ(), "ENCODER_CLOUD_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := &syncbuf.Buffer{}
	endpoint := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var line struct{ Msg, Endpoint string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				endpoint <- line.Endpoint
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	var addr string
	select {
	case ep := <-endpoint:
		addr = strings.TrimPrefix(ep, "http://")
	case err := <-exited:
		t.Fatalf("serve exited: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start:\n%s", logs.String())
	}
	b, err := cloud.ReadBootstrap(boot)
	if err != nil {
		t.Fatal(err)
	}

	const flood = 600
	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	for i := range flood {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		conns = append(conns, c)
		auth := ""
		if i%3 != 0 {
			auth = "Authorization: Bearer " + b.APIKey + "\r\n"
		}
		// A write to a connection the server already refused may fail.
		fmt.Fprintf(c, "POST /acs/credentials/create HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", auth)
		if i%50 == 49 {
			if err := healthzFrom(addr); err != nil {
				t.Fatalf("healthz after %d flood connections: %v\n%s", i+1, err, logs.String())
			}
		}
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil && !isClosedByPeer(err) {
			t.Fatalf("flood connection %d not closed by the server: %v", i, err)
		}
	}
	if err := healthzFrom(addr); err != nil {
		t.Fatalf("healthz after the flood: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve still running after SIGTERM:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), b.APIKey) {
		t.Error("the API key is in the logs")
	}
}

func isClosedByPeer(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// healthzFrom asks /healthz from 127.0.0.1, an address the flood does not
// use, on a connection of its own.
func healthzFrom(addr string) error {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
