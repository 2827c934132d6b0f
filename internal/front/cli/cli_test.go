package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

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
