package userconfig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/wire/api"
)

// Secret is one [secrets.NAME] table: where the CLI reads the value
// (with the caller's own rights, each time a VM is given it), which hosts
// it may be sent to, and where the guest finds its placeholder. The value
// itself never enters the guest: the daemon's proxy puts it in requests
// to those hosts.
type Secret struct {
	FromEnv     string   `toml:"from_env"`
	FromFile    string   `toml:"from_file"`
	FromCommand []string `toml:"from_command"`
	Hosts       []string `toml:"hosts"`
	// Env is the guest variable holding the placeholder; File a path
	// under the guest user's home holding it. One or both.
	Env  string `toml:"env"`
	File string `toml:"file"`
}

var secretName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// maxSecretBytes bounds a value: it travels in a request header.
const maxSecretBytes = 16 << 10

func (s Secret) check(name string) error {
	if !secretName.MatchString(name) {
		return fmt.Errorf("secrets.%s: a secret's name is lower-case letters, digits, '-' and '_', at most 32", name)
	}
	sources := 0
	for _, set := range []bool{s.FromEnv != "", s.FromFile != "", len(s.FromCommand) > 0} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return fmt.Errorf("secrets.%s: say where its value comes from, once: from_env = \"GH_TOKEN\", from_file = \"~/.config/gh/token\" or from_command = [\"gh\", \"auth\", \"token\"]", name)
	}
	if s.FromEnv != "" && !guestproto.EnvName(s.FromEnv) {
		return fmt.Errorf("secrets.%s: from_env %q is not a variable name", name, s.FromEnv)
	}
	if len(s.Hosts) == 0 {
		return fmt.Errorf("secrets.%s: hosts = [...] names where it may be sent (such as [\"api.github.com\"]); without it, it goes nowhere", name)
	}
	for _, h := range s.Hosts {
		if h == "" || strings.ContainsAny(h, "/: ") {
			return fmt.Errorf("secrets.%s: host %q: a DNS name such as api.github.com, or *.example.com", name, h)
		}
	}
	if s.Env == "" && s.File == "" {
		return fmt.Errorf("secrets.%s: say where the guest finds its placeholder: env = \"GH_TOKEN\" and/or file = \"~/.config/gh/token\"", name)
	}
	if s.Env != "" && !guestproto.EnvName(s.Env) {
		return fmt.Errorf("secrets.%s: env %q is not a variable name", name, s.Env)
	}
	if s.File != "" {
		if _, err := HomeRelative(s.File); err != nil {
			return fmt.Errorf("secrets.%s: file: %w", name, err)
		}
	}
	return nil
}

// Grants reads the values of the named secrets, with the caller's
// rights, into what the daemon is sent. An unknown name, or a value that
// cannot be read, is an error naming the secret, before any VM is made.
func (c Config) Grants(ctx context.Context, names []string) ([]api.SecretGrant, error) {
	var out []api.SecretGrant
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		s, ok := c.Secrets[n]
		if !ok {
			return nil, fmt.Errorf("no secret %q in your config: %s", n, c.secretNames())
		}
		v, err := s.value(ctx)
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", n, err)
		}
		g := api.SecretGrant{Name: n, Value: v, Hosts: s.Hosts, Env: s.Env}
		if s.File != "" {
			g.File, _ = HomeRelative(s.File)
		}
		out = append(out, g)
	}
	return out, nil
}

func (c Config) secretNames() string {
	if len(c.Secrets) == 0 {
		return "it declares none (add a [secrets.NAME] table: see 'banger vm run --help')"
	}
	var ns []string
	for n := range c.Secrets {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return "it declares " + strings.Join(ns, ", ")
}

// value reads the secret's value from its source.
func (s Secret) value(ctx context.Context) (string, error) {
	var v string
	switch {
	case s.FromEnv != "":
		e, ok := os.LookupEnv(s.FromEnv)
		if !ok || e == "" {
			return "", fmt.Errorf("$%s is not set", s.FromEnv)
		}
		v = e
	case s.FromFile != "":
		p, err := expandHome(s.FromFile)
		if err != nil {
			return "", err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("read its value: %w", err)
		}
		v = strings.TrimRight(string(b), "\r\n")
	default:
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, s.FromCommand[0], s.FromCommand[1:]...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(errOut.String())
			if len(msg) > 300 {
				msg = msg[:300] + "…"
			}
			if msg != "" {
				err = fmt.Errorf("%w: %s", err, msg)
			}
			return "", fmt.Errorf("run %s: %w", strings.Join(s.FromCommand, " "), err)
		}
		v = strings.TrimRight(out.String(), "\r\n")
	}
	switch {
	case v == "":
		return "", errors.New("its value is empty")
	case len(v) > maxSecretBytes:
		return "", fmt.Errorf("its value is %d bytes, over %d", len(v), maxSecretBytes)
	case strings.ContainsAny(v, "\r\n\x00"):
		return "", errors.New("its value holds a line break or NUL: it must fit in one request header")
	}
	return v, nil
}

// expandHome reads "~/x" under the caller's home; other paths as given.
func expandHome(p string) (string, error) {
	rest, ok := strings.CutPrefix(p, "~/")
	if !ok {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the home directory: %w", err)
	}
	return filepath.Join(home, rest), nil
}
