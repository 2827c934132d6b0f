package mcpserver

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/banger-dev/banger/internal/front/client"
	"github.com/banger-dev/banger/internal/front/userconfig"
	"github.com/banger-dev/banger/internal/front/workspace"
	"github.com/banger-dev/banger/internal/wire/api"
)

// Remote is the Daemon of a real banger: the daemon's API over its
// socket, with the workspace's client side (the seed, lent credentials,
// diff and pull) done here, with the user's rights, as the CLI does it.
type Remote struct {
	c *client.Client
	// checkout is the directory the server acts for: what it seeds, and
	// where a pull's work goes when its seed source is no checkout.
	checkout string
	// log takes notes and warnings: the server's stderr, never its
	// stdout, which carries the protocol.
	log io.Writer
	// secrets are the names of the user's secrets every sandbox is given.
	secrets []string
}

var _ Daemon = (*Remote)(nil)

// GiveSecrets has every sandbox made or started from now on given the
// named secrets of the user's config, read afresh each time.
func (r *Remote) GiveSecrets(names []string) { r.secrets = names }

// NewRemote returns the Daemon of the daemon c talks to, for a server
// acting for checkout; notes go to log.
func NewRemote(c *client.Client, checkout string, log io.Writer) *Remote {
	return &Remote{c: c, checkout: checkout, log: log}
}

// workspace does the workspace's verbs with both their result and their
// notes going to w.
func (r *Remote) workspace(w io.Writer) *workspace.Client {
	w = &lockedWriter{w: w}
	return workspace.New(r.c, w, w)
}

func (r *Remote) List(ctx context.Context) ([]api.VM, error) { return r.c.VMs(ctx) }

func (r *Remote) Get(ctx context.Context, name string) (api.VM, error) { return r.c.VM(ctx, name) }

func (r *Remote) Create(ctx context.Context, req api.VMCreateRequest, s *Seed, onEvent func(api.Event)) (api.VM, error) {
	if s != nil {
		id, err := r.workspace(r.log).Seed(ctx, r.checkout, s.Disk, onEvent)
		if err != nil {
			return api.VM{}, err
		}
		req.Seed = id
	}
	v, err := r.c.CreateVM(ctx, req, onEvent)
	if err != nil {
		return v, err
	}
	r.lend(ctx, v.Name)
	if err := r.giveSecrets(ctx, v.Name); err != nil {
		// A sandbox without the secrets it was to have is not made.
		if rerr := r.c.RemoveVM(context.WithoutCancel(ctx), v.Name, true); rerr != nil {
			fmt.Fprintf(r.log, "banger: remove vm %s: %v\n", v.Name, rerr)
		}
		return api.VM{}, err
	}
	return v, nil
}

func (r *Remote) Start(ctx context.Context, name string, onEvent func(api.Event)) (api.VM, error) {
	v, err := r.c.StartVM(ctx, name, api.VMStartRequest{}, onEvent)
	if err == nil {
		r.lend(ctx, name)
		err = r.giveSecrets(ctx, name)
	}
	return v, err
}

// giveSecrets gives a sandbox just booted the server's secrets.
func (r *Remote) giveSecrets(ctx context.Context, name string) error {
	if len(r.secrets) == 0 {
		return nil
	}
	cfg, _, err := userconfig.Load()
	if err != nil {
		return err
	}
	grants, err := cfg.Grants(ctx, r.secrets)
	if err != nil {
		return err
	}
	if err := r.workspace(r.log).GiveSecrets(ctx, name, grants); err != nil {
		return fmt.Errorf("give vm %s its secrets: %w", name, err)
	}
	return nil
}

// lend lends a VM just booted the credentials the user's config allows.
// It is read again each time, so a changed token reaches the next
// sandbox without a restart of the server. A failure is only noted: the
// sandbox runs without them.
func (r *Remote) lend(ctx context.Context, name string) {
	cfg, _, err := userconfig.Load()
	if err == nil {
		err = r.workspace(r.log).Lend(ctx, name, cfg.AuthSync)
	}
	if err != nil {
		fmt.Fprintf(r.log, "banger: lend credentials to vm %s: %v\n", name, err)
	}
}

func (r *Remote) Stop(ctx context.Context, name string, onEvent func(api.Event)) (api.VM, error) {
	return r.c.StopVM(ctx, name, api.VMStopRequest{}, onEvent)
}

func (r *Remote) Remove(ctx context.Context, name string, force bool) error {
	return r.c.RemoveVM(ctx, name, force)
}

func (r *Remote) Logs(ctx context.Context, name string, w io.Writer) error {
	return r.c.VMLogs(ctx, name, false, w)
}

func (r *Remote) Diff(ctx context.Context, name string, stat, sinceSeed bool, w io.Writer) error {
	return r.workspace(w).Diff(ctx, name, workspace.DiffOptions{Stat: stat, SinceSeed: sinceSeed})
}

func (r *Remote) Pull(ctx context.Context, name, branch string, force bool, w io.Writer) (PullResult, error) {
	// The work goes back where it came from (with --all, not always this
	// checkout), else here.
	p, err := r.workspace(w).Pull(ctx, name, workspace.PullOptions{Branch: branch, Home: r.checkout, Force: force})
	return PullResult{Branch: p.Branch, Commit: p.Commit, Commits: p.Commits}, err
}

func (r *Remote) Record(ctx context.Context, name string, ev api.ActivityEvent) error {
	return r.c.RecordActivity(ctx, name, ev)
}

func (r *Remote) Report(ctx context.Context, name, since string) (api.ActivityReport, error) {
	return r.c.Activity(ctx, name, since)
}

func (r *Remote) RootChanges(ctx context.Context, name string) (api.RootChanges, error) {
	return r.c.RootChanges(ctx, name)
}

// lockedWriter serializes writes: a verb's result and notes are one
// writer here, and git writes both at once.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
