package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/banger-dev/banger/internal/wire/api"
)

func TestPlainProgress(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf)
	p.event(api.Event{Type: api.EventOperation, Operation: "abc", Message: "kernel pull k"})
	p.event(api.Event{Type: api.EventProgress, Stage: "download", Message: "downloading x"})
	for done := int64(0); done <= 1000; done += 10 {
		p.event(api.Event{Type: api.EventProgress, Stage: "download", Done: done << 20, Total: 1000 << 20})
	}
	// A tiny file's byte counts would be noise in a log.
	p.event(api.Event{Type: api.EventProgress, Stage: "unpack", Done: 0, Total: 1400})
	p.event(api.Event{Type: api.EventProgress, Stage: "unpack", Done: 1400, Total: 1400})
	p.event(api.Event{Type: api.EventProgress, Stage: "publish", Message: "publishing k"})
	p.done()
	want := `operation abc: kernel pull k
==> downloading x
    download: 0 B of 1000 MiB (0%)
    download: 250 MiB of 1000 MiB (25%)
    download: 500 MiB of 1000 MiB (50%)
    download: 750 MiB of 1000 MiB (75%)
    download: 1000 MiB of 1000 MiB (100%)
==> publishing k
`
	if buf.String() != want {
		t.Fatalf("plain progress:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Setenv("BANGER_SSH_KEY", t.TempDir()+"/id_ed25519")
	for _, args := range [][]string{
		{"kernel", "ls", "-o", "yaml"},
		{"kernel", "import", "x"},
		{"kernel", "show"},
		{"kernel", "pull", "a", "b"},
		{"vm", "run", "--cpus", "0", "--", "true"},
		{"vm", "run", "--memory", "lots", "--", "true"},
		{"vm", "run"}, // a shell needs a terminal; tests have none
		{"vm", "cp", "a", "b"},
		{"vm", "cp", "x:a", "y:b"},
		{"vm", "exec", "web"},
		{"vm", "ls", "-o", "yaml"},
		{"vm", "ls", "--no-such-flag"},
		{"vm", "show"},
		{"vm", "frobnicate"},
		{"frobnicate"},
		{"mcp", "extra"},
		{"vm", "run", "--workdir", "x", "--no-workdir", "--", "true"},
	} {
		var out, errOut bytes.Buffer
		root := NewRoot(&out, &errOut)
		root.SetArgs(append(args, "--socket", "/nonexistent/banger.sock"))
		err := root.Execute()
		if err == nil {
			t.Errorf("%v: no error", args)
			continue
		}
		if strings.Contains(err.Error(), "cannot reach") {
			t.Errorf("%v: reached for the daemon before checking usage: %v", args, err)
		}
		if code := exitCode(err); code != 2 {
			t.Errorf("%v: exit code %d, want 2 (bad usage): %v", args, code, err)
		}
	}
}

func TestSplitVMPath(t *testing.T) {
	tests := []struct{ in, vm, path string }{
		{"web:/root/f", "web", "/root/f"},
		{"web:", "web", ""},
		{"./a:b", "", "./a:b"},
		{"/tmp/x", "", "/tmp/x"},
		{":x", "", ":x"},
	}
	for _, tt := range tests {
		if vm, path := splitVMPath(tt.in); vm != tt.vm || path != tt.path {
			t.Errorf("splitVMPath(%q) = %q, %q; want %q, %q", tt.in, vm, path, tt.vm, tt.path)
		}
	}
}

func TestHelpTeaches(t *testing.T) {
	var out bytes.Buffer
	root := NewRoot(&out, &out)
	root.SetArgs([]string{"kernel", "pull", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sources are tried in order", "Ctrl-C cancels", "banger kernel pull debian-bookworm"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("kernel pull --help lacks %q", want)
		}
	}
}

// A flag's help may not put text in backquotes: pflag takes it for the
// value's name, and --help then shows "--egress banger vm egress".
func TestFlagValueNames(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); strings.ContainsAny(name, " ") {
				t.Errorf("%s --%s shows its value as %q: its help has text in backquotes", c.CommandPath(), f.Name, name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewRoot(&bytes.Buffer{}, &bytes.Buffer{}))
}
