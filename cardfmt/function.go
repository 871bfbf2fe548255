package cardfmt

import (
	"fmt"
	"strconv"
	"strings"
)

// Function is what a card is for. It is byte 6 of the record; the lock
// decides what each function may open.
type Function uint8

// Card functions. Their values are part of the record format.
const (
	FunctionGuest       Function = 1
	FunctionStaff       Function = 2
	FunctionMaster      Function = 3
	FunctionMaintenance Function = 4
	FunctionEmergency   Function = 5
)

var functionNames = [...]string{
	FunctionGuest:       "guest",
	FunctionStaff:       "staff",
	FunctionMaster:      "master",
	FunctionMaintenance: "maintenance",
	FunctionEmergency:   "emergency",
}

// Valid reports whether f is one of the defined functions.
func (f Function) Valid() bool {
	return f >= FunctionGuest && f <= FunctionEmergency
}

// String returns the function's name ("guest", "staff", "master",
// "maintenance", "emergency"), or "Function(N)" for an undefined value.
func (f Function) String() string {
	if f.Valid() {
		return functionNames[f]
	}
	return "Function(" + strconv.Itoa(int(f)) + ")"
}

// ParseFunction parses a function name as String returns it. Case and
// surrounding spaces are ignored.
func ParseFunction(s string) (Function, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for f := FunctionGuest; f <= FunctionEmergency; f++ {
		if functionNames[f] == name {
			return f, nil
		}
	}
	return 0, fmt.Errorf("unknown card function %q (want guest, staff, master, maintenance or emergency)", s)
}

// MarshalText encodes a defined function as its name.
func (f Function) MarshalText() ([]byte, error) {
	if !f.Valid() {
		return nil, fmt.Errorf("cannot encode undefined card function %d", uint8(f))
	}
	return []byte(functionNames[f]), nil
}

// UnmarshalText decodes a function name with ParseFunction.
func (f *Function) UnmarshalText(b []byte) error {
	v, err := ParseFunction(string(b))
	if err != nil {
		return err
	}
	*f = v
	return nil
}
