package vpcd

import (
	"bufio"
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

// Readers lists the vpcd slots pcscd is configured with. With exactly one
// vpcd entry in /etc/reader.conf.d it uses that entry's FRIENDLYNAME and
// CHANNELID (the port): the driver gives each entry two slots, ports
// CHANNELID and CHANNELID+1. Anything else (no entry, several, unreadable)
// gives DefaultReaders: pcscd numbers several readers in an order the files
// do not tell.
func Readers() []Reader {
	rs, err := readersFrom(confDir)
	if err != nil || len(rs) == 0 {
		return DefaultReaders()
	}
	return rs
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
	if len(vpcd) != 1 {
		return nil, nil
	}
	e := vpcd[0]
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
