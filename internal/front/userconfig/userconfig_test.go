package userconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"missing file", "", ""},
		{"good", "workdir = \"off\"\n[auth_sync]\nfiles = [\"~/.gitconfig\", \".config/gh/hosts.yml\"]\nenv = [\"GH_TOKEN\"]\nssh_agent = true\n", ""},
		{"unknown key", "wrokdir = \"off\"\n", "unknown setting wrokdir"},
		{"bad workdir", "workdir = \"always\"\n", `"auto" or "off"`},
		{"file outside home", "[auth_sync]\nfiles = [\"/etc/shadow\"]\n", "~/PATH"},
		{"escaping file", "[auth_sync]\nfiles = [\"~/../other/.netrc\"]\n", "not a file under your home"},
		{"bad env", "[auth_sync]\nenv = [\"A=B\"]\n", "not a variable name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "config.toml")
			if tc.body != "" {
				os.WriteFile(p, []byte(tc.body), 0o600)
			}
			t.Setenv("BANGER_CONFIG", p)
			c, _, err := Load()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.body == "" && c.Workdir != "auto" {
					t.Errorf("default workdir = %q", c.Workdir)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
