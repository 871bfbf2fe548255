package cardfmt

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestValidate(t *testing.T) {
	base := testCredential()
	if err := base.Validate(); err != nil {
		t.Fatalf("valid credential: %v", err)
	}
	e := entrances(2)
	for _, tc := range []struct {
		name      string
		edit      func(*Credential)
		field     string
		errorText string
	}{
		{"nil id", func(c *Credential) { c.ID = uuid.Nil }, "credential_id", "credential_id: must not be the nil UUID"},
		{"empty card number", func(c *Credential) { c.CardNumber = "" }, "card_number", "card_number: must be 1 to 20 characters [0-9A-Za-z-]"},
		{"21-character card number", func(c *Credential) { c.CardNumber = strings.Repeat("1", 21) }, "card_number", ""},
		{"card number with space", func(c *Credential) { c.CardNumber = "12 34" }, "card_number", ""},
		{"card number with underscore", func(c *Credential) { c.CardNumber = "12_34" }, "card_number", ""},
		{"card number with non-ASCII", func(c *Credential) { c.CardNumber = "Zimmer-ä" }, "card_number", ""},
		{"function 0", func(c *Credential) { c.Function = 0 }, "card_function_type", ""},
		{"function 6", func(c *Credential) { c.Function = 6 }, "card_function_type", ""},
		{"zero starts_at", func(c *Credential) { c.StartsAt = time.Time{} }, "starts_at", "starts_at: must be from 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z"},
		{"starts_at before 1970", func(c *Credential) { c.StartsAt = time.Unix(-1, 0) }, "starts_at", ""},
		{"ends_at after 2106", func(c *Credential) { c.EndsAt = maxTime.Add(time.Second) }, "ends_at", ""},
		{"ends_at equals starts_at", func(c *Credential) { c.EndsAt = c.StartsAt }, "ends_at", "ends_at: must be after starts_at (in whole seconds)"},
		{"ends_at before starts_at", func(c *Credential) { c.EndsAt = c.StartsAt.Add(-time.Hour) }, "ends_at", ""},
		{"ends_at within the same second", func(c *Credential) {
			c.StartsAt = c.StartsAt.Add(100 * time.Millisecond)
			c.EndsAt = c.StartsAt.Add(500 * time.Millisecond)
		}, "ends_at", ""},
		{"33 entrances", func(c *Credential) { c.Entrances = entrances(33) }, "entrance_ids", "entrance_ids: at most 32 entrances, got 33"},
		{"nil entrance", func(c *Credential) { c.Entrances = []uuid.UUID{e[0], uuid.Nil} }, "entrance_ids[1]", "entrance_ids[1]: must not be the nil UUID"},
		{"duplicate entrance", func(c *Credential) { c.Entrances = []uuid.UUID{e[0], e[1], e[0]} }, "entrance_ids[2]", "entrance_ids[2]: duplicates entrance_ids[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.edit(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalidCredential) {
				t.Fatalf("Validate: %v, want ErrInvalidCredential", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("Validate: %v, want field %s", err, tc.field)
			}
			if !strings.HasPrefix(err.Error(), tc.field+": ") {
				t.Fatalf("error %q does not start with the field", err)
			}
			if tc.errorText != "" && err.Error() != tc.errorText {
				t.Fatalf("error %q, want %q", err, tc.errorText)
			}
			if _, err := Seal(c, testKeySet(t), uid7); !errors.Is(err, ErrInvalidCredential) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Seal: %v", err)
			}
		})
	}
}

func TestFunction(t *testing.T) {
	names := map[Function]string{
		FunctionGuest: "guest", FunctionStaff: "staff", FunctionMaster: "master",
		FunctionMaintenance: "maintenance", FunctionEmergency: "emergency",
	}
	for f, name := range names {
		if f.String() != name {
			t.Errorf("%d.String() = %q, want %q", f, f.String(), name)
		}
		for _, s := range []string{name, strings.ToUpper(name), " " + name + "\n"} {
			if got, err := ParseFunction(s); err != nil || got != f {
				t.Errorf("ParseFunction(%q) = %v, %v", s, got, err)
			}
		}
		text, err := f.MarshalText()
		if err != nil || string(text) != name {
			t.Errorf("MarshalText(%d) = %q, %v", f, text, err)
		}
		var back Function
		if err := back.UnmarshalText(text); err != nil || back != f {
			t.Errorf("UnmarshalText(%q) = %v, %v", text, back, err)
		}
	}
	// The byte values are part of the record format.
	if FunctionGuest != 1 || FunctionStaff != 2 || FunctionMaster != 3 || FunctionMaintenance != 4 || FunctionEmergency != 5 {
		t.Error("function values changed")
	}
	for _, s := range []string{"", "vip", "guests", "1"} {
		if _, err := ParseFunction(s); err == nil {
			t.Errorf("ParseFunction(%q) accepted", s)
		}
	}
	if got := Function(9).String(); got != "Function(9)" {
		t.Errorf("Function(9).String() = %q", got)
	}
	if _, err := Function(0).MarshalText(); err == nil {
		t.Error("MarshalText of Function(0) succeeded")
	}
}
