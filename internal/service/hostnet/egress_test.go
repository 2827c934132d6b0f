package hostnet

import (
	"errors"
	"testing"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestParseEgress(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		err      bool
	}{
		{"", "open", false},
		{"open", "open", false},
		{"deny", "deny", false},
		{"learn", "learn", false},
		{"allow=a.test", "allow=a.test", false},
		{"allow=A.Test., b.test,a.test", "allow=a.test,b.test", false},
		{"allow=*.example.com", "allow=*.example.com", false},
		{"allow=", "", true},
		{"allow=10.0.0.1", "", true},
		{"allow=a..b", "", true},
		{"allow=a b", "", true},
		{"deny=x", "", true},
		{"block", "", true},
	} {
		e, err := ParseEgress(tt.in)
		if tt.err {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("%q: err %v, want invalid", tt.in, err)
			}
			continue
		}
		if err != nil || e.String() != tt.want {
			t.Errorf("%q: %q, %v; want %q", tt.in, e.String(), err, tt.want)
		}
	}
}

func TestEgressAllows(t *testing.T) {
	allow, _ := ParseEgress("allow=a.test,*.svc.test")
	for _, tt := range []struct {
		e    Egress
		name string
		want bool
	}{
		{Egress{Mode: EgressOpen}, "anything.test", true},
		{Egress{Mode: EgressLearn}, "anything.test", true},
		{Egress{Mode: EgressDeny}, "a.test", false},
		{allow, "a.test", true},
		{allow, "b.test", false},
		// A name is not its subdomains, nor a name ending like it.
		{allow, "x.a.test", false},
		{allow, "aa.test", false},
		{allow, "db.svc.test", true},
		{allow, "svc.test", false},
		{allow, "evilsvc.test", false},
	} {
		if got := tt.e.Allows(tt.name); got != tt.want {
			t.Errorf("%s allows %s = %v, want %v", tt.e, tt.name, got, tt.want)
		}
	}
}
