package cardfmttest

import (
	"reflect"
	"testing"
)

// The layout tests pin what cards hold; that needs the same keys and
// credentials every run.
func TestDeterministic(t *testing.T) {
	a, b, c := KeySet(t, "site-a", 2), KeySet(t, "site-a", 2), KeySet(t, "site-b", 2)
	if a.ID() != b.ID() || a.Current().Version != 2 {
		t.Fatalf("the same seed gave key sets %x and %x (current version %d)", a.ID(), b.ID(), a.Current().Version)
	}
	if a.ID() == c.ID() {
		t.Fatal("two seeds gave the same key set")
	}
	ka, _ := a.Current().CardKey('K', []byte{1, 2, 3, 4})
	kb, _ := b.Current().CardKey('K', []byte{1, 2, 3, 4})
	if ka != kb {
		t.Fatal("the same seed gave different keys")
	}
	if x, y := Credential("100234", 3), Credential("100234", 3); !reflect.DeepEqual(x, y) || len(x.Entrances) != 3 {
		t.Fatalf("credentials differ: %+v %+v", x, y)
	}
	if c := Credential("100234", 2); c.Validate() != nil {
		t.Fatalf("not a valid credential: %v", c.Validate())
	}
}
