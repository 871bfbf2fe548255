//go:build windows

package journal

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// stateDirSDDL is a protected DACL (nothing inherited from ProgramData,
// which lets every user read) granting full control to SYSTEM, the
// Administrators and the directory's owner, inherited by what is created
// inside. Mode bits mean nothing on Windows; this is what keeps the
// journal's job data from other users of the front-desk PC.
const stateDirSDDL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)"

// prepareDir makes the state directory and restricts its ACL.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sd, err := windows.SecurityDescriptorFromString(stateDirSDDL)
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	err = windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("restrict access: %w", err)
	}
	return nil
}
