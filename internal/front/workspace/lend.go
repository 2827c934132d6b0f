package workspace

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/banger-dev/banger/internal/front/userconfig"
	"github.com/banger-dev/banger/internal/wire/api"
)

// Lend sends the running VM name the credentials auth (the user config's
// [auth_sync]) lists: files read from the caller's home with the caller's
// own rights, variables from its environment. A file it cannot read is
// left out with a note on log; when auth lists nothing, or nothing it
// lists is there, Lend sends nothing and says nothing.
func (c *Client) Lend(ctx context.Context, name string, auth userconfig.AuthSync) error {
	if auth.Empty() {
		return nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return fmt.Errorf("find the home directory to lend files from: %w", err)
	}
	req := lendRequest(auth, home, os.LookupEnv, c.log)
	if len(req.Files) == 0 && len(req.Env) == 0 {
		return nil
	}
	v, err := c.daemon.AuthSync(ctx, name, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.log, "==> lent vm %s: %s (in memory in the guest, gone when it stops)\n", name, strings.Join(v.Lent, ", "))
	return nil
}

// lendRequest reads what auth lists: files under home, variables through
// lookup. A file it cannot read is noted on warn and left out.
func lendRequest(auth userconfig.AuthSync, home string, lookup func(string) (string, bool), warn io.Writer) api.AuthSync {
	var req api.AuthSync
	for _, f := range auth.Files {
		// Checked when the config was loaded.
		rel, _ := userconfig.HomeRelative(f)
		b, err := os.ReadFile(filepath.Join(home, rel))
		if err != nil {
			fmt.Fprintf(warn, "banger: not lending ~/%s: %v\n", rel, err)
			continue
		}
		req.Files = append(req.Files, api.LentFile{Path: rel, Data: b})
	}
	for _, e := range auth.Env {
		if v, ok := lookup(e); ok {
			if req.Env == nil {
				req.Env = map[string]string{}
			}
			req.Env[e] = v
		}
	}
	return req
}

// GiveSecrets gives the running VM name the secrets grants holds (read
// with Config.Grants) and says what the guest got.
func (c *Client) GiveSecrets(ctx context.Context, name string, grants []api.SecretGrant) error {
	if len(grants) == 0 {
		return nil
	}
	if _, err := c.daemon.GiveSecrets(ctx, name, api.SecretsRequest{Secrets: grants}); err != nil {
		return err
	}
	for _, g := range grants {
		var where []string
		if g.Env != "" {
			where = append(where, "$"+g.Env)
		}
		if g.File != "" {
			where = append(where, "~/"+g.File)
		}
		fmt.Fprintf(c.log, "==> gave vm %s secret %s: a placeholder in %s; the host adds the value for %s only\n", name, g.Name, strings.Join(where, " and "), strings.Join(g.Hosts, ", "))
	}
	return nil
}
