package workspace

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/front/seed"
	"github.com/banger-dev/banger/internal/front/userconfig"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/api"
)

// TestDescribe: the seeding line names what it seeds; e2e looks for
// "seeding checkout at BASE (main)".
func TestDescribe(t *testing.T) {
	base := "0123456789abcdef0123456789abcdef01234567"
	for _, tt := range []struct {
		plan seed.Plan
		want string
	}{
		{seed.Plan{}, "directory"},
		{seed.Plan{Git: true}, "checkout"},
		{seed.Plan{Git: true, Base: base}, "checkout at 0123456789ab"},
		{seed.Plan{Git: true, Branch: "main"}, "checkout (main)"},
		{seed.Plan{Git: true, Base: base, Branch: "main"}, "checkout at 0123456789ab (main)"},
	} {
		if got := describe(&tt.plan); got != tt.want {
			t.Errorf("describe(%+v) = %q, want %q", tt.plan, got, tt.want)
		}
	}
}

func TestHostCandidates(t *testing.T) {
	for _, tt := range []struct {
		name                    string
		repo, home, cwd, source string
		want                    []string
	}{
		{"here first, then the seed source", "", "", "/cwd", "/src", []string{"/cwd", "/src"}},
		{"no cwd", "", "", "", "/src", []string{"/src"}},
		{"--repo alone", "/repo", "", "/cwd", "/src", []string{"/repo"}},
		{"mcp: the seed source, then its checkout", "", "/home", "/cwd", "/src", []string{"/src", "/home"}},
		{"mcp, no seed source", "", "/home", "/cwd", "", []string{"/home"}},
		{"nothing", "", "", "", "", nil},
	} {
		if got := hostCandidates(tt.repo, tt.home, tt.cwd, tt.source); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: hostCandidates = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestHostRepo(t *testing.T) {
	testkit.NeedGit(t)
	root, _ := filepath.EvalSymlinks(t.TempDir())
	repo := filepath.Join(root, "repo")
	sub := filepath.Join(repo, "sub")
	plain := filepath.Join(root, "plain")
	os.MkdirAll(sub, 0o755)
	os.Mkdir(plain, 0o755)
	testkit.Git(t, repo, "init", "-q")
	vm := func(source string) api.VM { return api.VM{Work: &api.Work{Source: source}} }
	for _, tt := range []struct {
		name            string
		repo, home, cwd string
		v               api.VM
		want, wantErr   string
	}{
		{"the checkout's top", "", "", sub, vm(plain), repo, ""},
		{"the seed source when here is none", "", "", plain, vm(sub), repo, ""},
		{"--repo", sub, "", plain, vm(plain), repo, ""},
		{"--repo not a checkout", plain, "", sub, vm(sub), "", "--repo " + plain + " is not a git checkout"},
		{"nowhere", "", "", plain, vm(plain), "", "not in a git checkout, and the VM's seed source is not one either"},
		{"mcp's checkout", "", sub, plain, vm(plain), repo, ""},
	} {
		got, err := hostRepo(context.Background(), tt.repo, tt.home, tt.cwd, tt.v)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.HasPrefix(err.Error(), tt.wantErr)) {
			t.Errorf("%s: hostRepo = %q, %v; want %q, %q", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestSeedDir(t *testing.T) {
	testkit.NeedGit(t)
	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	os.Mkdir(repo, 0o755)
	testkit.Git(t, repo, "init", "-q")
	for _, tt := range []struct {
		workdir, cwd, want string
	}{
		{"auto", repo, repo},
		{"off", repo, ""},
		{"auto", root, ""}, // not a checkout: never seeded unasked
	} {
		if got := SeedDir(context.Background(), tt.workdir, tt.cwd); got != tt.want {
			t.Errorf("SeedDir(%s, %s) = %q, want %q", tt.workdir, tt.cwd, got, tt.want)
		}
	}
}

// TestReport: what vm pull prints, which e2e and agents read.
func TestReport(t *testing.T) {
	tip := "fedcba9876543210fedcba9876543210fedcba98"
	many := make([]string, 22)
	for i := range many {
		many[i] = fmt.Sprintf("c%02d commit %d", i, i)
	}
	for _, tt := range []struct {
		name    string
		commits []string
		dirty   bool
		want    string
	}{
		{"nothing", []string{}, false, "vm w1 -> branch banger/w1 (fedcba987654): no changes since the seed\n"},
		{"commits", []string{"b two", "a one"}, false, "vm w1 -> branch banger/w1 (fedcba987654): 2 commits\n  b two\n  a one\n"},
		{"dirty", []string{"b uncommitted", "a one"}, true, "vm w1 -> branch banger/w1 (fedcba987654): 2 commits, the last one the uncommitted changes\n  b uncommitted\n  a one\n"},
		{"many", many, false, "vm w1 -> branch banger/w1 (fedcba987654): 22 commits\n" +
			func() string {
				var b strings.Builder
				for _, c := range many[:20] {
					b.WriteString("  " + c + "\n")
				}
				return b.String()
			}() + "  ... 2 more\n"},
	} {
		var b bytes.Buffer
		report(&b, "w1", Pulled{Branch: "banger/w1", Commit: tip, Commits: tt.commits}, tt.dirty)
		if b.String() != tt.want {
			t.Errorf("%s: report printed\n%s\nwant\n%s", tt.name, b.String(), tt.want)
		}
	}
}

func TestLendRequest(t *testing.T) {
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, ".gitconfig"), []byte("[user]\n"), 0o600)
	os.MkdirAll(filepath.Join(home, ".config", "gh"), 0o755)
	os.WriteFile(filepath.Join(home, ".config", "gh", "hosts.yml"), []byte("github.com:\n"), 0o600)
	env := map[string]string{"GH_TOKEN": "t0k", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tt := range []struct {
		name string
		auth userconfig.AuthSync
		want api.AuthSync
		warn string
	}{
		{"files, with or without ~/", userconfig.AuthSync{Files: []string{"~/.gitconfig", ".config/gh/hosts.yml"}},
			api.AuthSync{Files: []api.LentFile{{Path: ".gitconfig", Data: []byte("[user]\n")}, {Path: ".config/gh/hosts.yml", Data: []byte("github.com:\n")}}}, ""},
		{"a missing file is left out, with a note", userconfig.AuthSync{Files: []string{"~/.netrc", "~/.gitconfig"}},
			api.AuthSync{Files: []api.LentFile{{Path: ".gitconfig", Data: []byte("[user]\n")}}}, "banger: not lending ~/.netrc: "},
		{"set variables, empty ones too", userconfig.AuthSync{Env: []string{"GH_TOKEN", "UNSET", "EMPTY"}},
			api.AuthSync{Env: map[string]string{"GH_TOKEN": "t0k", "EMPTY": ""}}, ""},
		{"nothing there", userconfig.AuthSync{Files: []string{"~/.netrc"}, Env: []string{"UNSET"}},
			api.AuthSync{}, "banger: not lending ~/.netrc: "},
	} {
		var warn bytes.Buffer
		got := lendRequest(tt.auth, home, lookup, &warn)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: lendRequest = %+v, want %+v", tt.name, got, tt.want)
		}
		if !strings.HasPrefix(warn.String(), tt.warn) || (tt.warn == "") != (warn.Len() == 0) {
			t.Errorf("%s: noted %q, want %q...", tt.name, warn.String(), tt.warn)
		}
	}
}
