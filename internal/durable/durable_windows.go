//go:build windows

package durable

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// fileSDDL is a protected DACL (nothing inherited from the directory,
// which under ProgramData lets every user read) granting full control to
// SYSTEM, the Administrators and the file's owner. Mode bits mean nothing
// on Windows.
const fileSDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;OW)"

// dirSDDL is fileSDDL for a directory, inherited by what is created
// inside.
const dirSDDL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)"

// restrict gives the new, still empty file f its protected ACL.
func restrict(f *os.File) error {
	// By name: the handle os.CreateTemp opened lacks WRITE_DAC.
	return setDACL(f.Name(), fileSDDL)
}

func restrictDir(dir string) error {
	return setDACL(dir, dirSDDL)
}

func setDACL(name, sddl string) error {
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	err = windows.SetNamedSecurityInfo(name, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("restrict access to %s: %w", name, err)
	}
	return nil
}
