package userconfig

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretsConfig(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"good", "[secrets.gh]\nfrom_env = \"GH_TOKEN\"\nhosts = [\"api.github.com\"]\nenv = \"GH_TOKEN\"\n", ""},
		{"no source", "[secrets.gh]\nhosts = [\"a.test\"]\nenv = \"T\"\n", "where its value comes from"},
		{"two sources", "[secrets.gh]\nfrom_env = \"A\"\nfrom_file = \"~/t\"\nhosts = [\"a.test\"]\nenv = \"T\"\n", "once"},
		{"no hosts", "[secrets.gh]\nfrom_env = \"A\"\nenv = \"T\"\n", "hosts = [...]"},
		{"a URL for a host", "[secrets.gh]\nfrom_env = \"A\"\nhosts = [\"https://a.test/\"]\nenv = \"T\"\n", "a DNS name"},
		{"nowhere in the guest", "[secrets.gh]\nfrom_env = \"A\"\nhosts = [\"a.test\"]\n", "where the guest finds"},
		{"bad name", "[secrets.GH]\nfrom_env = \"A\"\nhosts = [\"a.test\"]\nenv = \"T\"\n", "lower-case"},
		{"file outside home", "[secrets.gh]\nfrom_env = \"A\"\nhosts = [\"a.test\"]\nfile = \"/etc/token\"\n", "~/PATH"},
		{"unknown key", "[secrets.gh]\nfrom_env = \"A\"\nhosts = [\"a.test\"]\nenv = \"T\"\nvalue = \"x\"\n", "unknown setting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "config.toml")
			os.WriteFile(p, []byte(tc.body), 0o600)
			t.Setenv("BANGER_CONFIG", p)
			_, _, err := Load()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// Values are read from each kind of source with the caller's rights, and
// a value that cannot be read names its secret.
func TestGrants(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "tok")
	os.WriteFile(tokFile, []byte("from-file\n"), 0o600)
	t.Setenv("TEST_TOKEN", "from-env")
	c := Config{Secrets: map[string]Secret{
		"env":   {FromEnv: "TEST_TOKEN", Hosts: []string{"a.test"}, Env: "A"},
		"file":  {FromFile: tokFile, Hosts: []string{"b.test"}, File: "~/.tok"},
		"cmd":   {FromCommand: []string{"echo", "from-command"}, Hosts: []string{"c.test"}, Env: "C"},
		"unset": {FromEnv: "TEST_NOT_SET_ANYWHERE", Hosts: []string{"a.test"}, Env: "U"},
		"fails": {FromCommand: []string{"sh", "-c", "echo no token >&2; exit 3"}, Hosts: []string{"a.test"}, Env: "F"},
		"lines": {FromCommand: []string{"printf", "a\\nb"}, Hosts: []string{"a.test"}, Env: "L"},
	}}
	gs, err := c.Grants(context.Background(), []string{"env", "file", "cmd", "env"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, g := range gs {
		got[g.Name] = g.Value
	}
	if len(gs) != 3 || got["env"] != "from-env" || got["file"] != "from-file" || got["cmd"] != "from-command" {
		t.Errorf("grants: %+v", gs)
	}
	if gs[1].File != ".tok" {
		t.Errorf("file secret's guest path %q, want .tok", gs[1].File)
	}
	for name, want := range map[string]string{
		"unset": "$TEST_NOT_SET_ANYWHERE is not set", "fails": "no token", "lines": "line break", "nosuch": `no secret "nosuch"`,
	} {
		if _, err := c.Grants(context.Background(), []string{name}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}
