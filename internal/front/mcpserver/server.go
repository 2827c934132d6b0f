// Package mcpserver is `banger mcp`: a Model Context Protocol server that
// gives a coding agent its own VMs, seeded with the checkout the server
// runs in, and the tools to work in them and hand the work back as a
// branch. Like every verb it is a client: the daemon does the privileged
// work, and commands and files reach the guest over SSH with the user's
// own key.
package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Tool is the MadeBy.Tool recorded on the VMs this server makes.
const Tool = "mcp"

// Daemon is what the server needs of banger besides SSH into its guests.
// Remote implements it over the daemon's socket; unit tests fake it.
type Daemon interface {
	List(ctx context.Context) ([]api.VM, error)
	Get(ctx context.Context, name string) (api.VM, error)
	// Create makes and starts a VM, after seeding the checkout into its
	// /work unless seed is nil.
	Create(ctx context.Context, req api.VMCreateRequest, seed *Seed, onEvent func(api.Event)) (api.VM, error)
	Start(ctx context.Context, name string, onEvent func(api.Event)) (api.VM, error)
	Stop(ctx context.Context, name string, onEvent func(api.Event)) (api.VM, error)
	Remove(ctx context.Context, name string, force bool) error
	Logs(ctx context.Context, name string, w io.Writer) error
	// Diff writes what `banger vm diff` prints.
	// With sinceSeed, only what changed since the seed (vm diff
	// --since-seed).
	Diff(ctx context.Context, name string, stat, sinceSeed bool, w io.Writer) error
	// Pull writes the VM's work to a branch of the host repository, and
	// what `banger vm pull` prints to w.
	Pull(ctx context.Context, name, branch string, force bool, w io.Writer) (PullResult, error)
	// Record adds what the server did in a VM to its activity record.
	Record(ctx context.Context, name string, ev api.ActivityEvent) error
	// Report is a VM's activity record from since on ("" for all).
	Report(ctx context.Context, name, since string) (api.ActivityReport, error)
	// RootChanges is how a stopped VM's root disk differs from its image.
	RootChanges(ctx context.Context, name string) (api.RootChanges, error)
}

// Seed asks for the checkout to be copied into a new VM's /work.
type Seed struct {
	// Disk is the work disk's size ("4G"); empty for the default.
	Disk string
}

// PullResult is what a pull made.
type PullResult struct {
	Branch  string   `json:"branch" jsonschema:"the branch written in the host repository"`
	Commit  string   `json:"commit" jsonschema:"the commit the branch points at"`
	Commits []string `json:"commits" jsonschema:"the commits since the seed, newest first, one line each"`
}

// Options configure a server.
type Options struct {
	// Checkout is the absolute path of the directory the server acts for:
	// the top of the git checkout it was started in, else that directory.
	Checkout string
	// Git says whether Checkout is a git checkout, which VMs are seeded
	// from.
	Git bool
	// All widens the server's reach to every VM, whoever made it.
	All bool
	// Key is the user's banger SSH key, which guests authorize.
	Key ssh.Signer
	// Network and Egress are every sandbox's network mode and egress
	// policy (api.VMCreateRequest's): the person who starts the server
	// chooses them, and the agent cannot widen them ("": the daemon's
	// defaults).
	Network, Egress string
	// Secrets are what every sandbox is given, for the agent to be told
	// where the placeholders are.
	Secrets []SecretDoc
	// Version is banger's, reported to clients.
	Version string
	// KillAfter is how long a canceled or timed-out command has to end
	// after SIGINT before it is killed (default 3s).
	KillAfter time.Duration
	// ProgressEvery is how often a running command reports progress
	// (default 2s).
	ProgressEvery time.Duration
	// Log takes the server's own warnings (its stderr; never stdout,
	// which carries the protocol); nil drops them.
	Log io.Writer
}

// Server is banger's MCP server.
type Server struct {
	d     Daemon
	o     Options
	conns *conns
	mcp   *mcp.Server
}

// New returns the MCP server; serve a client with Run.
func New(d Daemon, o Options) *Server {
	if o.KillAfter <= 0 {
		o.KillAfter = 3 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 2 * time.Second
	}
	s := &Server{d: d, o: o, conns: newConns()}
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: "banger", Title: "banger microVM sandboxes", Version: o.Version}, &mcp.ServerOptions{
		Instructions: s.instructions(),
	})
	s.addTools()
	return s
}

// Run serves one client on t (stdio for `banger mcp`) until it leaves.
func (s *Server) Run(ctx context.Context, t mcp.Transport) error {
	defer s.Close()
	return s.mcp.Run(ctx, t)
}

// Connect serves a client on t in the background, for tests.
func (s *Server) Connect(ctx context.Context, t mcp.Transport) (*mcp.ServerSession, error) {
	return s.mcp.Connect(ctx, t, nil)
}

// Close drops the SSH connections the server keeps to guests.
func (s *Server) Close() { s.conns.closeAll() }

func (s *Server) instructions() string {
	scope := "the VMs banger mcp made for " + s.o.Checkout
	if s.o.All {
		scope = "every banger VM on this host"
	}
	seeded := "a copy of the checkout " + s.o.Checkout + " (committed, uncommitted and untracked files, with its git history) is in /work"
	if !s.o.Git {
		seeded = s.o.Checkout + " is not a git checkout, so new sandboxes start with an empty /work"
	}
	return `banger gives you disposable Linux microVMs ("sandboxes"): each has its own kernel, root access, and nothing of this host but what is copied in. In a new sandbox ` + seeded + `. Work there freely: install packages, build, run tests, commit. Your work comes back to the host only as a git branch (sandbox_pull), for a human to review; the host checkout is never touched.

Typical flow: sandbox_create, then sandbox_exec / sandbox_read_file / sandbox_write_file in /work, commit with git in the sandbox, sandbox_diff to review, sandbox_pull to hand it over, sandbox_remove when done. Sandboxes outlive this session; sandbox_list shows them. This server reaches ` + scope + `.`
}

// inScope says whether the server may see and touch v.
func (s *Server) inScope(v api.VM) bool {
	return s.o.All || (v.MadeBy != nil && v.MadeBy.Tool == Tool && v.MadeBy.Checkout == s.o.Checkout)
}

// errOutOfScope: the VM exists but this server does not act for it.
var errOutOfScope = errors.New("out of scope")

// vm returns the named VM when in scope; with no name, the only VM in
// scope, so an agent with one sandbox need not repeat its name.
func (s *Server) vm(ctx context.Context, name string) (api.VM, error) {
	if name == "" {
		vs, err := s.list(ctx)
		if err != nil {
			return api.VM{}, err
		}
		switch len(vs) {
		case 0:
			return api.VM{}, fmt.Errorf("no sandbox yet: make one with sandbox_create: %w", errdefs.ErrNotFound)
		case 1:
			return vs[0], nil
		}
		var names []string
		for _, v := range vs {
			names = append(names, v.Name)
		}
		return api.VM{}, fmt.Errorf("%d sandboxes (%s): say which one in \"vm\": %w", len(vs), strings.Join(names, ", "), errdefs.ErrInvalid)
	}
	v, err := s.d.Get(ctx, name)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return api.VM{}, fmt.Errorf("no sandbox named %q: sandbox_list shows yours: %w", name, errdefs.ErrNotFound)
		}
		return api.VM{}, err
	}
	if !s.inScope(v) {
		return api.VM{}, fmt.Errorf("vm %s was not made by banger mcp for %s, so this server leaves it alone (a human can start banger mcp --all to reach every VM): %w", name, s.o.Checkout, errOutOfScope)
	}
	return v, nil
}

// running returns the named VM, refusing one that is not running.
func (s *Server) running(ctx context.Context, name string) (api.VM, error) {
	v, err := s.vm(ctx, name)
	if err != nil {
		return v, err
	}
	if v.State != api.VMRunning {
		return v, fmt.Errorf("sandbox %s is %s: start it with sandbox_start: %w", v.Name, v.State, errdefs.ErrConflict)
	}
	return v, nil
}

// list returns the VMs in scope.
func (s *Server) list(ctx context.Context) ([]api.VM, error) {
	vs, err := s.d.List(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.VM{}
	for _, v := range vs {
		if s.inScope(v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// progress returns a sink for banger's operation events that forwards
// them as MCP progress notifications, when the client asked for them.
func progress(ctx context.Context, req *mcp.CallToolRequest) func(api.Event) {
	token := req.Params.GetProgressToken()
	if token == nil || req.Session == nil {
		return func(api.Event) {}
	}
	var mu sync.Mutex
	step := 0.0
	var lastStage string
	var lastBytes time.Time
	return func(ev api.Event) {
		if ev.Type == api.EventOperation {
			return
		}
		mu.Lock()
		msg := ev.Message
		if msg == "" && (ev.Done > 0 || ev.Total > 0) {
			// Byte counts come often: a few a second are enough.
			if ev.Stage == lastStage && time.Since(lastBytes) < 250*time.Millisecond && ev.Done != ev.Total {
				mu.Unlock()
				return
			}
			lastStage, lastBytes = ev.Stage, time.Now()
			msg = fmt.Sprintf("%s: %s", ev.Stage, bytesOf(ev.Done, ev.Total))
		}
		if msg == "" {
			mu.Unlock()
			return
		}
		step++
		p := step
		mu.Unlock()
		req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: p, Message: msg})
	}
}

func bytesOf(done, total int64) string {
	if total > 0 {
		return fmt.Sprintf("%s of %s", size(done), size(total))
	}
	return size(done)
}

func size(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }

// jsonText is v as indented JSON, for a result's text.
func jsonText(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// SecretDoc is what the agent is told of a secret: its name, where the
// placeholder is, and the hosts the value goes to. Never the value.
type SecretDoc struct {
	Name, Env, File string
	Hosts           []string
}
