package internal_test

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/banger-dev/banger/internal/"

// rules say, for each part of the tree, which parts its packages may
// import (directly). A part is a folder under internal/ ("service"), or a
// package path when one package is an exception ("daemon" for the
// daemon's entry, which the CLI starts).
var rules = []struct {
	part   string
	may    []string
	reason string
}{
	{"wire", []string{"wire"}, "wire types are the daemon's contract with clients: standard library only"},
	{"kit", []string{"wire", "kit"}, "kit's small pieces are used everywhere and so use nothing of the parts"},
	{"store", []string{"wire", "kit"}, "the store records state; it calls no service"},
	{"format", []string{"wire", "kit", "format"}, "formats parse and write untrusted data; they know no service"},
	{"guest", []string{"wire", "kit", "guest", "format/tarx", "format/worktar"}, "the guest side knows nothing of the host's daemon or services"},
	{"vmm", []string{"wire", "kit", "vmm", "guest/guestproto"}, "a VMM driver boots what it is given; it calls no service"},
	{"service", []string{"wire", "kit", "store", "format", "guest", "vmm", "service"}, "services never name a VMM driver, the daemon or a client"},
	{"front", []string{"wire", "kit", "format", "guest", "front", "daemon"}, "the CLI and MCP server reach services and the store only through the daemon"},
	{"daemon", []string{"wire", "kit", "store", "format", "guest", "vmm", "service", "daemon"}, "the daemon wires everything"},
}

// exceptions are single packages a part's rule names more narrowly.
var narrower = map[string][]string{
	// services use the VMM interface only, never a driver.
	"service": {"vmm/qemu"},
	// the CLI starts the daemon (internal/daemon), nothing under it.
	"front": {"daemon/"},
}

type pkg struct {
	ImportPath string
	Imports    []string
}

func partOf(rel string) string { return strings.SplitN(rel, "/", 2)[0] }

func allowed(from, to string) bool {
	part := partOf(from)
	for _, n := range narrower[part] {
		if to == n || strings.HasPrefix(to, strings.TrimSuffix(n, "/")+"/") {
			return false
		}
	}
	for _, r := range rules {
		if r.part != part {
			continue
		}
		for _, m := range r.may {
			if to == m || strings.HasPrefix(to, m+"/") || partOf(to) == m {
				return true
			}
		}
	}
	return false
}

// TestImportRules holds the layout's promises: go list reads every
// package's imports, and one a part must never make fails the test.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "github.com/banger-dev/banger/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		from, ok := strings.CutPrefix(p.ImportPath, module)
		if !ok {
			continue
		}
		known := false
		for _, r := range rules {
			known = known || r.part == partOf(from)
		}
		if !known {
			t.Errorf("%s is in no part of the layout (internal/%s is not one of wire, kit, store, format, guest, vmm, service, front, daemon)", p.ImportPath, partOf(from))
			continue
		}
		seen++
		for _, imp := range p.Imports {
			to, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if !allowed(from, to) {
				t.Errorf("internal/%s imports internal/%s: %s", from, to, reason(from))
			}
		}
	}
	if seen < 40 {
		t.Fatalf("go list named only %d packages under internal/", seen)
	}
}

func reason(from string) string {
	for _, r := range rules {
		if r.part == partOf(from) {
			return r.reason
		}
	}
	return ""
}

func TestAllowed(t *testing.T) {
	for _, c := range []struct {
		from, to string
		want     bool
	}{
		{"service/vm", "vmm", true},
		{"service/vm", "vmm/qemu", false},
		{"front/cli", "daemon", true},
		{"front/cli", "daemon/server", false},
		{"front/cli", "service/hostnet", false},
		{"front/mcpserver", "store", false},
		{"guest/agent", "format/worktar", true},
		{"guest/agent", "format/ext4", false},
		{"wire/api", "kit/names", false},
		{"format/ext4", "service/operation", false},
	} {
		if got := allowed(c.from, c.to); got != c.want {
			t.Errorf("allowed(%s, %s) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
}

// TestReadmeNamesEveryPackage: the README's "Inside" table is where a
// reader finds what each package holds; a package it does not name is
// one a reader cannot place.
func TestReadmeNamesEveryPackage(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	inside := string(readme)
	if i := strings.Index(inside, "## Inside"); i >= 0 {
		inside = inside[i:]
	}
	out, err := exec.Command("go", "list", "github.com/banger-dev/banger/internal/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(p, module)
		if rel == p || strings.HasSuffix(rel, "test") && strings.Contains(rel, "/") && !strings.HasPrefix(rel, "kit/testkit") {
			continue // test-only helpers of one package (debpkg/debtest) go with it
		}
		if !strings.Contains(inside, "`"+rel+"`") {
			t.Errorf("README's Inside table does not name internal/%s", rel)
		}
	}
}
