// Package userconfig is the CLI's own configuration, in the user's home:
// what `vm run` seeds by default and which credentials it lends guests.
// The daemon never reads it: it is the calling user's, read with their
// rights.
package userconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/banger-dev/banger/internal/guest/guestproto"
)

// Config is ~/.config/banger/config.toml.
type Config struct {
	// Workdir is "auto" (seed the git checkout `vm run` is started in)
	// or "off".
	Workdir  string   `toml:"workdir"`
	AuthSync AuthSync `toml:"auth_sync"`
	// Secrets are the secrets `vm run --secret NAME` may give a VM.
	Secrets map[string]Secret `toml:"secrets"`
}

// AuthSync is the allow-list of credentials lent to guests.
type AuthSync struct {
	// Files are paths under the home directory ("~/.gitconfig"), each lent
	// at the same path under the guest user's home.
	Files []string `toml:"files"`
	// Env names variables set in every guest session from the caller's
	// environment.
	Env []string `toml:"env"`
	// SSHAgent forwards the caller's SSH agent into sessions.
	SSHAgent bool `toml:"ssh_agent"`
}

// Empty says nothing is configured to lend.
func (a AuthSync) Empty() bool { return len(a.Files) == 0 && len(a.Env) == 0 }

// Path is where the config is read from: $BANGER_CONFIG, else
// $XDG_CONFIG_HOME/banger/config.toml, else ~/.config/banger/config.toml.
func Path() (string, error) {
	if p := os.Getenv("BANGER_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "banger", "config.toml"), nil
}

// Load reads the config; a missing file is all defaults.
func Load() (Config, string, error) {
	c := Config{Workdir: "auto"}
	path, err := Path()
	if err != nil {
		return c, "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, path, nil
	}
	if err != nil {
		return c, path, fmt.Errorf("read %s: %w", path, err)
	}
	md, err := toml.Decode(string(b), &c)
	if err != nil {
		return c, path, fmt.Errorf("%s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		var keys []string
		for _, k := range und {
			keys = append(keys, k.String())
		}
		return c, path, fmt.Errorf("%s: unknown setting %s", path, strings.Join(keys, ", "))
	}
	if c.Workdir != "auto" && c.Workdir != "off" {
		return c, path, fmt.Errorf("%s: workdir = %q: \"auto\" or \"off\"", path, c.Workdir)
	}
	for _, f := range c.AuthSync.Files {
		if _, err := HomeRelative(f); err != nil {
			return c, path, fmt.Errorf("%s: auth_sync.files: %w", path, err)
		}
	}
	for _, e := range c.AuthSync.Env {
		if !guestproto.EnvName(e) {
			return c, path, fmt.Errorf("%s: auth_sync.env: %q is not a variable name", path, e)
		}
	}
	for name, sec := range c.Secrets {
		if err := sec.check(name); err != nil {
			return c, path, fmt.Errorf("%s: %w", path, err)
		}
	}
	return c, path, nil
}

// HomeRelative turns "~/.gitconfig" (or ".gitconfig") into a path
// relative to the home directory; anything outside the home is refused,
// since a file lands at the same place under the guest user's home.
func HomeRelative(p string) (string, error) {
	if !strings.HasPrefix(p, "~/") && filepath.IsAbs(p) {
		return "", fmt.Errorf("%q: name files under your home as ~/PATH", p)
	}
	rel, err := guestproto.HomePath(strings.TrimPrefix(p, "~/"))
	if err != nil {
		return "", fmt.Errorf("%q: not a file under your home", p)
	}
	return rel, nil
}
