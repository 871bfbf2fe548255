//go:build windows

package cardfmt

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// keyFileSDDL is a protected DACL (nothing inherited from the directory,
// which under ProgramData lets every user read) granting full control to
// SYSTEM, the Administrators and the file's owner: the journal directory's
// ACL, for a file. Mode bits mean nothing on Windows.
const keyFileSDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;OW)"

// restrictKeyFile gives the new, still empty key file f its protected ACL
// before any key byte is written to it.
func restrictKeyFile(f *os.File) error {
	sd, err := windows.SecurityDescriptorFromString(keyFileSDDL)
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	// By name: the handle os.CreateTemp opened lacks WRITE_DAC.
	err = windows.SetNamedSecurityInfo(f.Name(), windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("restrict access to %s: %w", f.Name(), err)
	}
	return nil
}
