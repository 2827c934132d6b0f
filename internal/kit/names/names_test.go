package names

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"debian-bookworm", true},
		{"k1", true},
		{"6.1.0-56_amd64", true},
		{strings.Repeat("a", MaxLen), true},
		{"", false},
		{strings.Repeat("a", 200), false},
		{"../x", false},
		{"..", false},
		{".hidden", false},
		{"a/b", false},
		{"Upper", false},
		{"sp ace", false},
		{"-flag", false},
		{"nul\x00", false},
	}
	for _, tt := range tests {
		err := Validate("kernel", tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("Validate(%q) error %v is not ErrInvalid", tt.name, err)
		}
	}
}

func TestSuggest(t *testing.T) {
	cands := []string{"debian-bookworm", "debian-bookworm-cloud", "ignite-5.10", "ubuntu-noble"}
	tests := []struct {
		in   string
		want []string
	}{
		{"debian-bookwrom", []string{"debian-bookworm", "debian-bookworm-cloud"}},
		{"ignite", []string{"ignite-5.10"}},
		{"zzzzzzzz", nil},
	}
	for _, tt := range tests {
		if got := Suggest(tt.in, cands); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Suggest(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestHint(t *testing.T) {
	cands := []string{"debian-bookworm", "ignite-5.10"}
	if got := Hint("debian-bookwrom", cands, "see ls"); got != `did you mean "debian-bookworm"?` {
		t.Errorf("Hint = %q", got)
	}
	if got := Hint("zzzzzzzz", cands, "see ls"); got != "see ls" {
		t.Errorf("Hint without match = %q", got)
	}
	if got := QuoteList([]string{"a", "b"}); got != `"a", "b"` {
		t.Errorf("QuoteList = %q", got)
	}
}

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		n := Generate(func(s string) bool { return seen[s] }, rand.IntN)
		if err := Validate("vm", n); err != nil {
			t.Fatalf("generated name %q is not valid: %v", n, err)
		}
		if seen[n] {
			t.Fatalf("generated %q twice", n)
		}
		seen[n] = true
	}
	// Everything taken but numbered names: Generate still finishes.
	n := Generate(func(s string) bool { return !strings.Contains(s, "-2") }, func(int) int { return 0 })
	if n != "amber-otter-2" {
		t.Fatalf("fallback name = %q", n)
	}
}

func TestInUse(t *testing.T) {
	ds := []api.Dependent{
		{Kind: "vm", Name: "mine", Owner: 1001},
		{Kind: "vm", Name: "theirs", Owner: 1002},
		{Kind: "vm", Name: "theirs2", Owner: 1003},
		{Kind: "snapshot", Name: "snap", Owner: 1001},
		{Kind: "snapshot", Name: "their-snap", Owner: 1002},
	}
	tests := []struct {
		name string
		ds   []api.Dependent
		mine func(uint32) bool
		want string
	}{
		{"own and others", ds, func(o uint32) bool { return o == 1001 }, `vm "mine", snapshot "snap", 2 VMs of other users and 1 snapshot of another user`},
		{"root sees all", ds[:2], func(uint32) bool { return true }, `vm "mine" and vm "theirs"`},
		{"only others", ds[1:2], func(o uint32) bool { return o == 1001 }, "1 VM of another user"},
		{"only mine", ds[:1], func(o uint32) bool { return o == 1001 }, `vm "mine"`},
	}
	for _, tt := range tests {
		if got := InUse(tt.ds, tt.mine); got != tt.want {
			t.Errorf("%s: InUse = %q, want %q", tt.name, got, tt.want)
		}
	}
}
