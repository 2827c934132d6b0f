package secretproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestNewPlaceholder(t *testing.T) {
	long := "sk-ant-api03-" + strings.Repeat("Zz9", 40)
	cases := []struct {
		value, prefix string
	}{
		{"ghp_0123456789abcdefghijABCDEFGHIJ012345", "ghp_"},
		{"github_pat_11AAAAAAA0123456789_abcdefghij", "github_pat_"},
		{"sk-proj-abcdefghijklmnop", "sk-proj-"},
		{"glpat-abcdefghijklmnopqrst", "glpat-"},
		{"xoxb-123-456-abcdef", "xoxb-123-"}, // "xoxb-123-456-" is 13 bytes
		{long, "sk-ant-"},                    // "sk-ant-api03-" is 13 bytes
		{"AKIAIOSFODNN7EXAMPLE", ""},
		{"ghp_", ""},               // nothing follows
		{"-leading-dash", ""},      // starts with a separator
		{"abc.def_ghi", ""},        // a character out of the set first
		{"abcdefghijklm_rest", ""}, // the separator past 12 bytes
		{"abcdefghijk_rest", "abcdefghijk_"},
		{"a", ""},
		{"ab", ""},
		{"p@ss w0rd!", ""},
	}
	for _, tc := range cases {
		t.Run(tc.value, func(t *testing.T) {
			seen := map[string]bool{}
			for range 20 {
				ph, err := NewPlaceholder(tc.value)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(ph, tc.prefix) {
					t.Fatalf("%q does not keep the prefix %q", ph, tc.prefix)
				}
				rest := ph[len(tc.prefix):]
				if want := max(32, len(tc.value)-len(tc.prefix)); len(rest) != want {
					t.Errorf("%d random characters, want %d", len(rest), want)
				}
				if strings.Trim(rest, alphabet) != "" {
					t.Errorf("%q has characters out of [A-Za-z0-9]", rest)
				}
				if strings.Contains(ph, tc.value) {
					t.Errorf("%q contains the value", ph)
				}
				if seen[ph] {
					t.Errorf("%q twice", ph)
				}
				seen[ph] = true
			}
		})
	}
	if _, err := NewPlaceholder(""); err == nil {
		t.Error("a placeholder for an empty value")
	}
}

// The random part is uniform over the 62 characters: 62,000 of them,
// each character within a wide margin of its 1,000 (a modulo bias would
// put the first eight at 1.25x).
func TestPlaceholderUniform(t *testing.T) {
	counts := map[rune]int{}
	for range 1000 {
		ph, _ := NewPlaceholder(strings.Repeat("x", 62))
		for _, r := range ph {
			counts[r]++
		}
	}
	for _, r := range alphabet {
		if n := counts[r]; n < 800 || n > 1200 {
			t.Errorf("%c: %d of 62,000", r, n)
		}
	}
}

func TestHostMatches(t *testing.T) {
	cases := []struct {
		pattern, host string
		want          bool
	}{
		{"api.github.com", "api.github.com", true},
		{"api.github.com", "github.com", false},
		{"api.github.com", "xapi.github.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "badexample.com", false},
		{"*.example.com", ".example.com", false},
		{"*.example.com", "example.com.evil", false},
		{"*.", "a", false},
		{"*", "a", false},
	}
	for _, tc := range cases {
		if got := hostMatches(tc.pattern, tc.host); got != tc.want {
			t.Errorf("hostMatches(%q, %q) = %v", tc.pattern, tc.host, got)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	cases := []struct {
		in, def, host, port string
		ok                  bool
	}{
		{"api.test:443", "", "api.test", "443", true},
		{"API.Test.:8443", "", "api.test", "8443", true},
		{"10.0.0.1:22", "", "10.0.0.1", "22", true},
		{"[::1]:443", "", "::1", "443", true},
		{"[::ffff:10.0.0.1]:443", "", "10.0.0.1", "443", true},
		{"_dmarc.x.test:443", "", "_dmarc.x.test", "443", true},
		{"api.test", "80", "api.test", "80", true},
		{"[::1]", "80", "::1", "80", true},
		{"api.test", "", "", "", false},
		{"api.test:0", "", "", "", false},
		{"api.test:65536", "", "", "", false},
		{"api.test:080", "", "", "", false},
		{"api.test:+80", "", "", "", false},
		{"api.test:-1", "", "", "", false},
		{"a..b:1", "", "", "", false},
		{"a b:1", "", "", "", false},
		{"-a.test:1", "", "", "", false},
		{"a-.test:1", "", "", "", false},
		{"1.2.3:1", "", "", "", false},
		{strings.Repeat("a", 64) + ".test:1", "", "", "", false},
		{strings.Repeat("a.", 130) + "test:1", "", "", "", false},
		{"[fe80::1%eth0]:1", "", "", "", false},
		{":443", "", "", "", false},
		{"", "80", "", "", false},
	}
	for _, tc := range cases {
		host, port, err := splitTarget(tc.in, tc.def)
		if (err == nil) != tc.ok || host != tc.host || port != tc.port {
			t.Errorf("splitTarget(%q, %q) = %q, %q, %v", tc.in, tc.def, host, port, err)
		}
	}
}

// The CA is what the API promises, and its leaves verify against it for
// their host only.
func TestAuthority(t *testing.T) {
	p, err := New("vm1", Config{Dial: nil})
	if err == nil || p != nil {
		t.Fatal("New without Dial")
	}
	e := newEnv(t)
	block, _ := pem.Decode(e.p.CACertPEM())
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	key, ok := ca.PublicKey.(*ecdsa.PublicKey)
	switch {
	case ca.Subject.CommonName != "banger VM test secrets CA":
		t.Errorf("name %q", ca.Subject.CommonName)
	case !ca.IsCA || ca.MaxPathLen != 0 || !ca.MaxPathLenZero:
		t.Errorf("IsCA %v MaxPathLen %d zero %v", ca.IsCA, ca.MaxPathLen, ca.MaxPathLenZero)
	case !ok || key.Curve != elliptic.P256():
		t.Errorf("key %T", ca.PublicKey)
	case now.Sub(ca.NotBefore) < 59*time.Minute || now.Sub(ca.NotBefore) > 61*time.Minute:
		t.Errorf("NotBefore %v", ca.NotBefore)
	case ca.NotAfter.Sub(now) < 364*24*time.Hour || ca.NotAfter.Sub(now) > 366*24*time.Hour:
		t.Errorf("NotAfter %v", ca.NotAfter)
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	leaf, err := e.p.ca.leaf("api.test", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "api.test", Roots: roots}); err != nil {
		t.Error(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: "other.test", Roots: roots}); err == nil {
		t.Error("the leaf for api.test verifies for other.test")
	}
	if d := leaf.Leaf.NotAfter.Sub(now); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("leaf valid for %v", d)
	}
	if again, _ := e.p.ca.leaf("api.test", now); again != leaf {
		t.Error("the leaf was not cached")
	}
	if later, _ := e.p.ca.leaf("api.test", now.Add(leafLifetime-time.Hour)); later == leaf {
		t.Error("a leaf about to expire was served from the cache")
	}
	for i := range maxLeaves + 50 {
		if _, err := e.p.ca.leaf(fmt.Sprintf("h%d.test", i), now); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.p.ca.leaves); n > maxLeaves {
		t.Errorf("%d leaves cached", n)
	}
	e.p.Close()
	if _, err := e.p.ca.leaf("api.test", now); err == nil {
		t.Error("a leaf signed after Close")
	}
}

// Add replaces by name, normalises hosts, and leaves out what could not
// work safely.
func TestAdd(t *testing.T) {
	e := newEnv(t)
	ph := mustPlaceholder(t, ghValue)
	e.p.Add(Secret{Name: "gh", Value: ghValue, Placeholder: ph, Hosts: []string{"API.test."}})
	if !e.p.intercepts("api.test") {
		t.Error("a host named in capitals with a trailing dot does not match")
	}
	e.p.Add(Secret{Name: "gh", Value: ghValue, Placeholder: ph, Hosts: []string{"other.test"}})
	e.p.Add(
		Secret{Name: "", Value: ghValue, Placeholder: ph},
		Secret{Name: "short", Value: ghValue, Placeholder: "abc"},
		Secret{Name: "tiny", Value: "x", Placeholder: ph},
	)
	if len(e.p.secrets) != 1 || !e.p.intercepts("other.test") || e.p.intercepts("api.test") {
		t.Errorf("secrets %d, other.test %v, api.test %v", len(e.p.secrets), e.p.intercepts("other.test"), e.p.intercepts("api.test"))
	}
	if !strings.Contains(e.logs.String(), "secret=short") || !strings.Contains(e.logs.String(), "secret=tiny") {
		t.Errorf("left-out secrets not logged: %s", e.logs)
	}
}
