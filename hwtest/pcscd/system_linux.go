package pcscd

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// system is what a private pcscd needs from the machine.
type system struct {
	pcscd   string
	unshare string
	// ipcDir holds pcscd's pid file and socket (pcscd -v: ipcdir).
	ipcDir string
	// usbDropDir holds the USB reader drivers (pcscd -v: usbdropdir).
	usbDropDir string
	// driver is the vpcd driver the machine has.
	driver string
	// userns: not root, so the mount namespace needs a user namespace.
	userns bool
}

// driverPaths are where Debian and a source install put the vpcd driver.
var driverPaths = []string{
	"/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
	"/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so",
}

func findSystem() (system, error) {
	var s system
	var err error
	if s.pcscd, err = lookPath("pcscd", "/usr/sbin/pcscd", "/usr/local/sbin/pcscd"); err != nil {
		return s, fmt.Errorf("%w: pcscd is not installed (Debian: pcscd): %w", ErrUnavailable, err)
	}
	if s.unshare, err = lookPath("unshare", "/usr/bin/unshare"); err != nil {
		return s, fmt.Errorf("%w: unshare is not installed (Debian: util-linux): %w", ErrUnavailable, err)
	}
	out, err := exec.Command(s.pcscd, "--version").CombinedOutput()
	if err != nil {
		return s, fmt.Errorf("%w: %s --version: %v: %s", ErrUnavailable, s.pcscd, err, out)
	}
	if s.ipcDir, s.usbDropDir, err = parseVersion(string(out)); err != nil {
		return s, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	drivers := driverPaths
	if s.usbDropDir != "" {
		drivers = append([]string{filepath.Join(s.usbDropDir, "serial", "libifdvpcd.so")}, drivers...)
	}
	for _, p := range drivers {
		if _, err := os.Stat(p); err == nil {
			s.driver = p
			break
		}
	}
	if s.driver == "" {
		return s, fmt.Errorf("%w: no vpcd driver in %v (Debian: vsmartcard-vpcd)", ErrUnavailable, drivers)
	}
	s.userns = os.Geteuid() != 0
	// The bind mount needs a mount point; pcscd makes the same directory.
	if _, err := os.Stat(s.ipcDir); errors.Is(err, os.ErrNotExist) && !s.userns {
		if err := os.MkdirAll(s.ipcDir, 0o755); err != nil {
			return s, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	if _, err := os.Stat(s.ipcDir); err != nil {
		return s, fmt.Errorf("%w: pcscd's directory %s: %w (start the machine's pcscd once, or run as root)", ErrUnavailable, s.ipcDir, err)
	}
	return s, nil
}

func lookPath(name string, fallback ...string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	// /usr/sbin is often not in a user's PATH.
	for _, f := range fallback {
		if _, serr := os.Stat(f); serr == nil {
			return f, nil
		}
	}
	return "", err
}

// ErrVersion: pcscd --version did not say where its socket lives.
var ErrVersion = errors.New("pcscd: version output names no ipcdir")

// parseVersion reads the build options pcscd --version prints, e.g.
// "... usbdropdir=/usr/lib/pcsc/drivers ipcdir=/run/pcscd ...".
func parseVersion(out string) (ipcDir, usbDropDir string, err error) {
	for _, f := range strings.Fields(out) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || !filepath.IsAbs(v) {
			continue
		}
		switch k {
		case "ipcdir":
			ipcDir = filepath.Clean(v)
		case "usbdropdir":
			usbDropDir = filepath.Clean(v)
		}
	}
	if ipcDir == "" || ipcDir == "/" {
		return "", "", fmt.Errorf("%w: %q", ErrVersion, strings.TrimSpace(out))
	}
	if usbDropDir == "/" {
		usbDropDir = ""
	}
	return ipcDir, usbDropDir, nil
}

// namespaceScript runs in the new mount namespace: the daemon's
// directory over pcscd's, an empty USB driver directory, then pcscd in
// the foreground (the same process, so signals reach it).
const namespaceScript = `set -e
mount --bind "$1" "$2"
if [ -n "$3" ] && [ -d "$3" ]; then mount -t tmpfs -o mode=0755,size=64k tmpfs "$3"; fi
exec "$4" --foreground --config "$5"`

func (s system) unshareArgs(dir, confDir string) []string {
	var args []string
	if s.userns {
		args = append(args, "--user", "--map-root-user")
	}
	return append(args, "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", namespaceScript, "pcscd-private", dir, s.ipcDir, s.usbDropDir, s.pcscd, confDir)
}

// socketAnswers reports whether a client can connect to pcscd's socket.
func socketAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// notListening are the TCP ports among ports that nothing listens on, by
// the kernel's tables: connecting to a vpcd port would insert a card.
func notListening(ports []int) []int {
	listening := map[int]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, p := range listeningPorts(f) {
			listening[p] = true
		}
	}
	var out []int
	for _, p := range ports {
		if !listening[p] {
			out = append(out, p)
		}
	}
	return slices.Compact(out)
}

// tcpListen is the st column's value for a listening socket.
const tcpListen = "0A"

func listeningPorts(file string) []int {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	return parseProcNetTCP(bufio.NewScanner(f))
}

// parseProcNetTCP reads the local ports of listening sockets from the
// kernel's table: "sl local_address rem_address st ...", the address as
// hex "IP:PORT".
func parseProcNetTCP(sc *bufio.Scanner) []int {
	var out []int
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != tcpListen {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			continue
		}
		p, err := strconv.ParseUint(f[1][i+1:], 16, 16)
		if err == nil {
			out = append(out, int(p))
		}
	}
	return out
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
