//go:build !windows

package pcsc

import (
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/ebfe/scard"
)

// serviceName names the smart-card service in log lines.
const serviceName = "pcscd"

// osErrRows adds platform-specific codes to errTable. pcsc-lite returns
// only SCARD_* codes.
var osErrRows []errRow

// osDeadCodes are platform-specific codes meaning the scard context died
// with the service.
var osDeadCodes []scard.Error

// refusal says that pcscd refused this process the polkit action
// (access_pcsc, or access_card for the reader name), and what fixes it.
func refusal(action, name string) string {
	what := "this process"
	if name != "" {
		what = fmt.Sprintf("this process the reader %q", name)
	}
	return fmt.Sprintf("pcscd refused %s (%s): polkit said \"NOT authorized for action: %s\". "+
		"pcscd 2.x lets only an active desktop session in by default, and a service has none. "+
		"Fix: allow org.debian.pcsc-lite.access_pcsc and org.debian.pcsc-lite.access_card to this account with a polkit rule; "+
		"the Debian package installs /usr/share/polkit-1/rules.d/60-encoder-bridge.rules for the account encoder-bridge "+
		"(docs/operations.md, \"The polkit rule, and why\"). Retrying without logging this again until pcscd lets it in.",
		what, account(), action)
}

// account names this process's user for the refusal message.
func account() string {
	uid := strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		return "user " + u.Username + ", uid " + uid
	}
	return "uid " + uid
}
