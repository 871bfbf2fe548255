package doctor

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/encoder-bridge/encoder-bridge/reader"
)

// pcscdSocket is where pcsc-lite's clients reach pcscd (Debian and most
// distributions); System paths have no leading slash.
const pcscdSocket = "run/pcscd/pcscd.comm"

func (r *run) serviceName() string {
	if r.env.OS == "windows" {
		return "Smart Card service (SCardSvr)"
	}
	return "pcscd"
}

// serviceFailed reports why the smart-card service cannot be used.
func (r *run) serviceFailed(err error) {
	switch {
	case r.env.OS == "windows":
		r.fail(checkService, err.Error(),
			"Windows stops the Smart Card service when the last reader is unplugged: plug the encoder in; else start it (\"sc start SCardSvr\") and set it to start automatically")
	case errors.Is(err, reader.ErrNotAuthorized):
		// reader/pcsc knows it from pcscd's answer, socket or not.
		r.fail(checkService, fmt.Sprintf("pcscd refused this user through polkit (pcscd logs \"NOT authorized for action: access_pcsc\"): %v", err), polkitFix)
	case !errors.Is(err, reader.ErrNoService):
		r.fail(checkService, err.Error(), "see pcscd's log: journalctl -u pcscd")
	case !r.exists(pcscdSocket):
		r.fail(checkService, fmt.Sprintf("pcscd is not running (no /%s): %v", pcscdSocket, err),
			"sudo apt-get install pcscd && sudo systemctl enable --now pcscd.socket")
	default:
		// The socket is there, so pcscd (or its socket unit) is, and it
		// turned this client away: with pcsc-lite 2.x that is polkit.
		r.fail(checkService, fmt.Sprintf("pcscd refused this user: %v. pcsc-lite 2.x lets only an active desktop session in unless polkit allows more (pcscd logs \"NOT authorized for action: access_pcsc\")", err),
			polkitFix)
	}
}

// polkitFix is the remedy for pcscd's polkit refusal.
const polkitFix = "install the package's polkit rule (/usr/share/polkit-1/rules.d/60-encoder-bridge.rules, allowing org.debian.pcsc-lite.access_pcsc and access_card to the encoder-bridge user) and run the bridge as that user; see docs/operations.md"

// acr122 are USB ids of readers built on NXP's PN533, which the kernel's
// NFC drivers claim before pcscd's CCID driver can.
var acr122 = [][2]string{
	{"072f", "2200"}, // ACS ACR122U
	{"072f", "2214"}, // ACS ACR1222L
	{"04cc", "2533"}, // NXP PN533 demo board
	{"04e6", "5591"}, // SCM SCL3711
}

// nfcModules are the kernel modules that take PN533 readers from pcscd.
var nfcModules = []string{"pn533_usb", "pn533", "nfc"}

// checkModules finds the kernel's NFC drivers loaded while a reader they
// claim is plugged in, pcscd's "Unable to claim USB interface".
func (r *run) checkModules() {
	if r.env.OS != "linux" {
		r.skip(checkModules, "Linux only")
		return
	}
	loaded := r.loadedModules()
	var ours []string
	for _, m := range nfcModules {
		if slices.Contains(loaded, m) {
			ours = append(ours, m)
		}
	}
	if len(ours) == 0 {
		r.pass(checkModules, "none loaded")
		return
	}
	claimed := r.pn533Readers()
	if len(claimed) == 0 {
		r.pass(checkModules, fmt.Sprintf("%s loaded, but no reader they claim is attached", strings.Join(ours, ", ")))
		return
	}
	r.fail(checkModules, fmt.Sprintf("%s loaded with a PN533 reader attached (USB %s): pcscd cannot claim it (\"Unable to claim USB interface\" in its log)", strings.Join(ours, ", "), strings.Join(claimed, ", ")),
		"printf 'blacklist pn533_usb\\nblacklist pn533\\nblacklist nfc\\n' | sudo tee /etc/modprobe.d/blacklist-nfc-pcscd.conf; sudo modprobe -r pn533_usb pn533 nfc; then replug the reader")
}

func (r *run) exists(name string) bool {
	_, err := fs.Stat(r.env.System, name)
	return err == nil
}

func (r *run) loadedModules() []string {
	f, err := r.env.System.Open("proc/modules")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, _, ok := strings.Cut(sc.Text(), " "); ok {
			out = append(out, name)
		}
	}
	return out
}

// pn533Readers lists the attached USB devices, vendor:product, that the
// NFC modules claim.
func (r *run) pn533Readers() []string {
	const dir = "sys/bus/usb/devices"
	entries, err := fs.ReadDir(r.env.System, dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		vendor := r.readTrim(path.Join(dir, e.Name(), "idVendor"))
		product := r.readTrim(path.Join(dir, e.Name(), "idProduct"))
		if slices.Contains(acr122, [2]string{vendor, product}) {
			out = append(out, vendor+":"+product)
		}
	}
	return out
}

func (r *run) readTrim(name string) string {
	b, err := fs.ReadFile(r.env.System, name)
	if err != nil {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(string(b)))
}
