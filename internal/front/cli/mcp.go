package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/banger-dev/banger/internal/front/cli/clikit"
	"github.com/banger-dev/banger/internal/front/gitwork"
	"github.com/banger-dev/banger/internal/front/mcpserver"
	"github.com/banger-dev/banger/internal/front/seed"
	"github.com/banger-dev/banger/internal/front/userconfig"
	"github.com/banger-dev/banger/internal/kit/version"
)

func newMCPCmd(a *app) *cobra.Command {
	var all bool
	var dir, network, egress string
	var secrets []string
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Serve coding agents over the Model Context Protocol (stdio)",
		Long: `Run an MCP server on standard input and output, for a coding agent (Claude
Code, Codex, Cursor, Goose, VS Code) to start. It acts for the checkout it
is started in: the agent makes sandboxes seeded with that checkout, runs
commands and edits files in them, and hands its work back as a branch.

Tools: sandbox_create, sandbox_exec, sandbox_read_file, sandbox_write_file,
sandbox_list_files, sandbox_diff, sandbox_pull, sandbox_start, sandbox_stop,
sandbox_remove, sandbox_list, sandbox_logs.

The server sees and touches only the VMs that banger mcp made for this
checkout (recorded on each VM: the BY column of 'banger vm ls'), so an
agent's restarts and parallel sessions share them and your own VMs stay
out of its reach; --all widens that to every VM. This is a scope for the
agent, not a permission: the server runs as you, with your access to the
daemon.

Your side stays the CLI: 'banger vm ls' shows what the agent made, 'banger
vm diff' and 'banger vm pull' review and take its work.

--net and --egress set every sandbox's network, as for 'banger vm run';
the agent is told what it may reach and cannot change it. Use bridge mode
with an allow list to keep an agent to the hosts its work needs:

  banger mcp --egress allow=github.com,*.githubusercontent.com,pypi.org,files.pythonhosted.org

--secret NAME gives every sandbox a secret of your config's [secrets.NAME]
(see 'banger vm run --help'): the agent sees a placeholder, the host adds
the value in requests to the secret's hosts only.`,
		Example: `  claude mcp add banger -- banger mcp          # Claude Code, in your checkout
  codex mcp add banger -- banger mcp           # Codex
  # Cursor, .cursor/mcp.json: {"mcpServers": {"banger": {"command": "banger", "args": ["mcp"]}}}
  npx @modelcontextprotocol/inspector --cli banger mcp --method tools/list`,
		GroupID: "host",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o, err := mcpOptions(ctx, dir)
			if err != nil {
				return err
			}
			o.All, o.Network, o.Egress, o.Log = all, network, egress, cmd.ErrOrStderr()
			if o.Key, _, err = clikit.UserKey(); err != nil {
				return err
			}
			o.Secrets, err = mcpSecrets(ctx, secrets)
			if err != nil {
				return err
			}
			scope := "the VMs banger mcp made for it"
			if all {
				scope = "every VM (--all)"
			}
			// Clients keep a server's stderr in their logs: say what it
			// serves, for whoever reads them.
			if network != "" || egress != "" {
				scope += fmt.Sprintf("; sandboxes get --net %s --egress %s", clikit.OrDash(network), clikit.OrDash(egress))
			}
			fmt.Fprintf(a.Stderr, "banger mcp: serving %s; it reaches %s\n", o.Checkout, scope)
			// Standard output is the protocol's: nothing else may write
			// to it.
			d := mcpserver.NewRemote(a.Client(), o.Checkout, a.Stderr)
			d.GiveSecrets(secrets)
			return mcpserver.New(d, o).Run(ctx, &mcp.StdioTransport{})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "reach every VM, not only those banger mcp made for this checkout")
	cmd.Flags().StringVarP(&dir, "dir", "C", "", "act for this checkout (default: the one the server is started in)")
	cmd.Flags().StringVar(&network, "net", "", "every sandbox's network: user, bridge or none (default: the daemon's default_network)")
	cmd.Flags().StringVar(&egress, "egress", "", "every sandbox's egress policy, held on the host: deny, allow=HOST[,HOST...], learn, from=VM (default: open)")
	cmd.Flags().StringArrayVar(&secrets, "secret", nil, "give every sandbox secret NAME of your config's [secrets.NAME] (repeatable): a placeholder in the guest, the value added by the host for its hosts only")
	return cmd
}

// mcpSecrets reads the named secrets once, so that one that cannot be
// read stops the server at its start rather than at a sandbox's, and
// says what the agent may be told of them (no values).
func mcpSecrets(ctx context.Context, names []string) ([]mcpserver.SecretDoc, error) {
	if len(names) == 0 {
		return nil, nil
	}
	cfg, _, err := userconfig.Load()
	if err != nil {
		return nil, err
	}
	grants, err := cfg.Grants(ctx, names)
	if err != nil {
		return nil, err
	}
	var out []mcpserver.SecretDoc
	for _, g := range grants {
		out = append(out, mcpserver.SecretDoc{Name: g.Name, Env: g.Env, File: g.File, Hosts: g.Hosts})
	}
	return out, nil
}

// mcpOptions finds the checkout the server acts for: the top of the git
// checkout dir is in, else dir itself.
func mcpOptions(ctx context.Context, dir string) (mcpserver.Options, error) {
	o := mcpserver.Options{Version: version.Version}
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return o, err
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return o, err
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return o, fmt.Errorf("--dir %s: %w", dir, err)
	}
	o.Checkout = abs
	if seed.InCheckout(ctx, abs) {
		top, err := gitwork.HostGit(ctx, abs, "rev-parse", "--show-toplevel")
		if err != nil {
			return o, err
		}
		o.Checkout, o.Git = strings.TrimSpace(top), true
	}
	return o, nil
}
