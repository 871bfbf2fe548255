package reader

import "testing"

func TestStableName(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC] 00 00", "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC] * 00"},
		{"ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC] 01 00", "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC] * 00"},
		{"ACS ACR1252 1S CL Reader [ACR1252 Dual Reader SAM] 01 01", "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader SAM] * 01"},
		{"Virtual PCD 00 01", "Virtual PCD * 01"},
		{"Virtual PCD 1A 00", "Virtual PCD * 00"},
		{"ACS ACR1252 1S CL Reader PICC 0", "ACS ACR1252 1S CL Reader PICC *"},
		{"HID Global OMNIKEY 5022 Smart Card Reader 12", "HID Global OMNIKEY 5022 Smart Card Reader *"},
		// Nothing that looks like a service-assigned index: kept whole.
		{"Reader", "Reader"},
		{"Reader 0000", "Reader 0000"},
		{"", ""},
	} {
		if got := StableName(c.name); got != c.want {
			t.Errorf("StableName(%q) = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestDisplayName(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC] 00 00", "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC]"},
		{"ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC] 01 00", "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader PICC]"},
		{"ACS ACR1252 1S CL Reader [ACR1252 Dual Reader SAM] 01 01", "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader SAM] 01"},
		{"Virtual PCD 00 01", "Virtual PCD 01"},
		{"ACS ACR1252 1S CL Reader PICC 0", "ACS ACR1252 1S CL Reader PICC"},
		{"HID Global OMNIKEY 5022 Smart Card Reader 12", "HID Global OMNIKEY 5022 Smart Card Reader"},
		{"Reader", "Reader"},
		{"Reader 0000", "Reader 0000"},
		{"", ""},
	} {
		if got := DisplayName(c.name); got != c.want {
			t.Errorf("DisplayName(%q) = %q, want %q", c.name, got, c.want)
		}
	}
}
