package vpcd

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Reader is a vpcd reader slot as pcscd names it and the address its card
// connects to.
type Reader struct {
	Name string // e.g. "Virtual PCD 00 00"
	Addr string // e.g. "127.0.0.1:35963"
}

// DefaultReaders are the two slots of the Debian vsmartcard-vpcd package.
func DefaultReaders() []Reader {
	return []Reader{
		{Name: "Virtual PCD 00 00", Addr: "127.0.0.1:35963"},
		{Name: "Virtual PCD 00 01", Addr: "127.0.0.1:35964"},
	}
}

// confDir is where pcscd reads serial-reader configuration.
const confDir = "/etc/reader.conf.d"

// EnvReaderConf names the reader.conf.d directory of a private pcscd
// (hwtest/pcscd) that this process should use instead of the machine's;
// PCSCLITE_CSOCK_NAME then names its socket.
const EnvReaderConf = "HWTEST_READER_CONF"

// Readers lists the vpcd slots pcscd is configured with. With
// EnvReaderConf set, those of that directory (see ConfiguredReaders).
// Otherwise, with exactly one vpcd entry in /etc/reader.conf.d it uses
// that entry's FRIENDLYNAME and CHANNELID (the port): the driver gives each
// entry two slots, ports CHANNELID and CHANNELID+1. Anything else (no
// entry, several, unreadable) gives DefaultReaders: pcscd numbers several
// readers in an order the files do not tell.
func Readers() []Reader {
	if os.Getenv(EnvReaderConf) != "" {
		rs, _ := ConfiguredReaders()
		return rs
	}
	rs, err := readersFrom(confDir)
	if err != nil || len(rs) == 0 {
		return DefaultReaders()
	}
	return rs
}

// ErrConf: the private reader configuration named by EnvReaderConf is
// missing or unusable.
var ErrConf = errors.New("vpcd: private reader configuration")

// ConfiguredReaders lists the slots of every vpcd entry in the directory
// EnvReaderConf names, two per entry, in file order. Each entry must have
// its own FRIENDLYNAME, so pcscd names its readers "FRIENDLYNAME 00 00"
// and "FRIENDLYNAME 00 01" whatever order it loads them in.
func ConfiguredReaders() ([]Reader, error) {
	dir := os.Getenv(EnvReaderConf)
	if dir == "" {
		return nil, fmt.Errorf("%w: %s is not set", ErrConf, EnvReaderConf)
	}
	rs, err := allReadersFrom(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %s=%s: %w", ErrConf, EnvReaderConf, dir, err)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: %s=%s: no vpcd entry", ErrConf, EnvReaderConf, dir)
	}
	return rs, nil
}

// ReaderFor is the reader whose card connects to addr, matched by port.
func ReaderFor(addr string) (Reader, bool) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Reader{}, false
	}
	for _, r := range Readers() {
		if _, p, _ := net.SplitHostPort(r.Addr); p == port {
			return r, true
		}
	}
	return Reader{}, false
}

type confEntry struct {
	name, lib, device, channel string
}

func readersFrom(dir string) ([]Reader, error) {
	vpcd, err := vpcdEntries(dir)
	if err != nil {
		return nil, err
	}
	if len(vpcd) != 1 {
		return nil, nil
	}
	return vpcd[0].readers()
}

// allReadersFrom is every vpcd entry of dir, which must have distinct
// names.
func allReadersFrom(dir string) ([]Reader, error) {
	vpcd, err := vpcdEntries(dir)
	if err != nil {
		return nil, err
	}
	var out []Reader
	seen := map[string]bool{}
	for _, e := range vpcd {
		if seen[e.name] {
			return nil, fmt.Errorf("two vpcd entries named %q: pcscd's numbering of them is not in the files", e.name)
		}
		seen[e.name] = true
		rs, err := e.readers()
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

func vpcdEntries(dir string) ([]confEntry, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var vpcd []confEntry
	for _, f := range files {
		es, err := parseConf(f)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if strings.Contains(filepath.Base(e.lib), "vpcd") {
				vpcd = append(vpcd, e)
			}
		}
	}
	return vpcd, nil
}

// readers are the entry's two slots.
func (e confEntry) readers() ([]Reader, error) {
	ch := e.channel
	if ch == "" { // older configs put the port after the device name
		if i := strings.LastIndexByte(e.device, ':'); i >= 0 {
			ch = e.device[i+1:]
		}
	}
	port, err := strconv.ParseUint(ch, 0, 16)
	if err != nil || port == 0 || port == 0xFFFF || e.name == "" {
		return nil, fmt.Errorf("vpcd entry %q: bad port %q", e.name, ch)
	}
	return []Reader{
		{Name: e.name + " 00 00", Addr: net.JoinHostPort("127.0.0.1", strconv.FormatUint(port, 10))},
		{Name: e.name + " 00 01", Addr: net.JoinHostPort("127.0.0.1", strconv.FormatUint(port+1, 10))},
	}, nil
}

// SystemPorts are the vpcd ports of the machine's pcscd configuration and
// the Debian defaults: a private pcscd must not take them.
func SystemPorts() []int {
	ports := []int{35963, 35964}
	es, _ := vpcdEntries(confDir)
	for _, e := range es {
		if rs, err := e.readers(); err == nil {
			for _, r := range rs {
				if _, p, err := net.SplitHostPort(r.Addr); err == nil {
					n, _ := strconv.Atoi(p)
					ports = append(ports, n)
				}
			}
		}
	}
	return ports
}

// parseConf reads reader.conf entries; FRIENDLYNAME starts a new one.
func parseConf(path string) ([]confEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var es []confEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		if k, v, ok := strings.Cut(line, "\t"); ok && len(k) < len(key) {
			key, val = k, v
		}
		val = strings.Trim(strings.TrimSpace(val), `"`)
		if key == "FRIENDLYNAME" {
			es = append(es, confEntry{name: val})
			continue
		}
		if len(es) == 0 {
			es = append(es, confEntry{})
		}
		e := &es[len(es)-1]
		switch key {
		case "LIBPATH":
			e.lib = val
		case "DEVICENAME":
			e.device = val
		case "CHANNELID":
			e.channel = val
		}
	}
	return es, sc.Err()
}
