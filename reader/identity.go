package reader

import (
	"context"
	"errors"
	"regexp"
)

// SerialNumberer is a Context that can ask a reader for its serial number.
// Reader names change with the USB port and the plug order; a serial
// number does not, so it is the better identity where a reader has one.
type SerialNumberer interface {
	// SerialNumber returns the serial number the named reader reports, or
	// an error wrapping ErrNoSerial when it reports none.
	SerialNumber(ctx context.Context, reader string) (string, error)
}

// ErrNoSerial: the reader (or its driver) reports no serial number.
var ErrNoSerial = errors.New("card reader reports no serial number")

var (
	// pcsc-lite names a reader "<name> II SS": II tells apart readers of
	// the same name in plug order, SS is the slot within the reader.
	pcscLiteName = regexp.MustCompile(`^(.*\S) [0-9A-F]{2} ([0-9A-F]{2})$`)
	// Windows appends an instance number in plug order: "<name> N".
	windowsName = regexp.MustCompile(`^(.*\S) [0-9]{1,3}$`)
)

// StableName is the reader's name without the part the smart-card service
// assigns in plug order, with "*" in its place: "ACS ACR1252 1S CL Reader
// [ACR1252 Dual Reader PICC] 01 00" and "... 00 00" are both "... * 00".
// The slot number stays, since it tells apart the slots of one reader.
func StableName(name string) string {
	if m := pcscLiteName.FindStringSubmatch(name); m != nil {
		return m[1] + " * " + m[2]
	}
	if m := windowsName.FindStringSubmatch(name); m != nil {
		return m[1] + " *"
	}
	return name
}

// DisplayName is the reader's name for people, without the part the
// smart-card service assigns in plug order, so it survives a replug: "ACS
// ACR1252 1S CL Reader [ACR1252 Dual Reader PICC] 01 00" and "... 00 00"
// are both "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC]". A slot
// other than the first keeps its number ("... 00 01" is "... 01").
func DisplayName(name string) string {
	if m := pcscLiteName.FindStringSubmatch(name); m != nil {
		if m[2] == "00" {
			return m[1]
		}
		return m[1] + " " + m[2]
	}
	if m := windowsName.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return name
}
