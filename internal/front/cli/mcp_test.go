package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

// TestMCPChecksOutItsCheckout: the scope banger mcp records is the top of
// the checkout it starts in, wherever in it, so an agent started in a
// subdirectory shares its sandboxes with one started at the top.
func TestMCPChecksOutItsCheckout(t *testing.T) {
	testkit.NeedGit(t)
	root, _ := filepath.EvalSymlinks(t.TempDir())
	repo := filepath.Join(root, "repo")
	sub := filepath.Join(repo, "src", "pkg")
	os.MkdirAll(sub, 0o755)
	testkit.Git(t, repo, "init", "-q")
	plain := filepath.Join(root, "notes")
	os.Mkdir(plain, 0o755)
	os.Symlink(repo, filepath.Join(root, "link"))

	for _, tt := range []struct {
		dir, checkout string
		git           bool
	}{
		{repo, repo, true},
		{sub, repo, true},
		{filepath.Join(root, "link", "src"), repo, true},
		{plain, plain, false},
	} {
		o, err := mcpOptions(context.Background(), tt.dir)
		if err != nil || o.Checkout != tt.checkout || o.Git != tt.git {
			t.Errorf("mcpOptions(%s) = %q, git %v, %v; want %q, git %v", tt.dir, o.Checkout, o.Git, err, tt.checkout, tt.git)
		}
	}
	if _, err := mcpOptions(context.Background(), filepath.Join(root, "missing")); err == nil {
		t.Error("--dir of a missing directory was accepted")
	}
}
