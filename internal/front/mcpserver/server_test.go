package mcpserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/guest/agent"
	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

const checkout = "/home/dev/app"

// fakeDaemon stands in for the daemon: its "running" VMs are the guest
// agent's real SSH server, serving on 127.0.0.1 in this process, so
// commands and files go over real SSH and SFTP to this host.
type fakeDaemon struct {
	t    *testing.T
	host ssh.Signer
	user ssh.Signer

	mu       sync.Mutex
	vms      map[string]api.VM
	created  []api.VMCreateRequest
	seeded   []*Seed
	removed  []string
	pulled   []string // the branches Pull was asked for
	canceled bool
	// block makes Create wait for its context, to test cancellation.
	block bool
	// recorded are the activity events the server reported, by VM.
	recorded map[string][]api.ActivityEvent
}

func (f *fakeDaemon) Record(ctx context.Context, name string, ev api.ActivityEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.recorded == nil {
		f.recorded = map[string][]api.ActivityEvent{}
	}
	f.recorded[name] = append(f.recorded[name], ev)
	return nil
}

func (f *fakeDaemon) RootChanges(ctx context.Context, name string) (api.RootChanges, error) {
	return api.RootChanges{VM: name, Image: "img", Added: []api.FileChange{{Path: "root/outside.txt", Type: "file", Size: 8}}, Changed: []api.FileChange{}, Removed: []api.FileChange{}}, nil
}

func (f *fakeDaemon) Report(ctx context.Context, name, since string) (api.ActivityReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return api.ActivityReport{VM: name, Counts: map[string]int64{}, Events: append([]api.ActivityEvent{}, f.recorded[name]...)}, nil
}

func newFakeDaemon(t *testing.T) *fakeDaemon {
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	host, _ := ssh.NewSignerFromKey(hk)
	_, uk, _ := ed25519.GenerateKey(rand.Reader)
	user, _ := ssh.NewSignerFromKey(uk)
	return &fakeDaemon{t: t, host: host, user: user, vms: map[string]api.VM{}}
}

// add records a VM; a running one gets its own agent.
func (f *fakeDaemon) add(v api.VM) api.VM {
	f.t.Helper()
	if v.State == api.VMRunning {
		testkit.NeedRoot(f.t, "running the agent's sessions as the guest's root account")
		srv := agent.NewSSHServer(f.host, []ssh.PublicKey{f.user.PublicKey()})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.t.Fatal(err)
		}
		f.t.Cleanup(func() { ln.Close() })
		go srv.Serve(ln)
		v.SSHPort, v.HostKey, v.PID = ln.Addr().(*net.TCPAddr).Port, ssh.FingerprintSHA256(f.host.PublicKey()), os.Getpid()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vms[v.Name] = v
	return v
}

func (f *fakeDaemon) List(ctx context.Context) ([]api.VM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.VM
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for n := range f.vms {
			if !yield(n) {
				return
			}
		}
	}) {
		out = append(out, f.vms[n])
	}
	return out, nil
}

func (f *fakeDaemon) Get(ctx context.Context, name string) (api.VM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.vms[name]
	if !ok {
		return v, fmt.Errorf("vm %q: %w", name, errdefs.ErrNotFound)
	}
	return v, nil
}

func (f *fakeDaemon) Create(ctx context.Context, req api.VMCreateRequest, seed *Seed, onEvent func(api.Event)) (api.VM, error) {
	f.mu.Lock()
	f.created = append(f.created, req)
	f.seeded = append(f.seeded, seed)
	block := f.block
	f.mu.Unlock()
	onEvent(api.Event{Stage: "pull", Message: "pulling image debian-bookworm"})
	onEvent(api.Event{Stage: "pull", Done: 5 << 20, Total: 10 << 20})
	if block {
		<-ctx.Done()
		f.mu.Lock()
		f.canceled = true
		f.mu.Unlock()
		return api.VM{}, fmt.Errorf("create vm: canceled and undone: %w", errdefs.ErrCanceled)
	}
	name := req.Name
	if name == "" {
		name = "swift-otter"
	}
	v := api.VM{Name: name, State: api.VMRunning, Image: "debian-bookworm", CPUs: 2, MemoryMB: 1024, MadeBy: req.MadeBy, CreatedAt: time.Now()}
	if seed != nil {
		v.Work = &api.Work{Source: checkout, Base: "0123456789abcdef", Files: 3, Bytes: 100}
	}
	return f.add(v), nil
}

func (f *fakeDaemon) Start(ctx context.Context, name string, onEvent func(api.Event)) (api.VM, error) {
	v, err := f.Get(ctx, name)
	if err != nil {
		return v, err
	}
	v.State = api.VMRunning
	return f.add(v), nil
}

func (f *fakeDaemon) Stop(ctx context.Context, name string, onEvent func(api.Event)) (api.VM, error) {
	v, err := f.Get(ctx, name)
	if err != nil {
		return v, err
	}
	v.State, v.PID = api.VMStopped, 0
	return f.add(v), nil
}

func (f *fakeDaemon) Remove(ctx context.Context, name string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.vms, name)
	f.removed = append(f.removed, name)
	return nil
}

func (f *fakeDaemon) Logs(ctx context.Context, name string, w io.Writer) error {
	for i := 1; i <= 300; i++ {
		fmt.Fprintf(w, "console line %d\n", i)
	}
	return nil
}

func (f *fakeDaemon) Diff(ctx context.Context, name string, stat, sinceSeed bool, w io.Writer) error {
	if sinceSeed {
		_, err := io.WriteString(w, "# changes in vm since the seed\n")
		return err
	}
	if stat {
		_, err := io.WriteString(w, " README.md | 1 +\n")
		return err
	}
	_, err := io.WriteString(w, strings.Repeat("+added line\n", 20000))
	return err
}

func (f *fakeDaemon) Pull(ctx context.Context, name, branch string, force bool, w io.Writer) (PullResult, error) {
	f.mu.Lock()
	f.pulled = append(f.pulled, branch)
	f.mu.Unlock()
	if branch == "" {
		branch = "banger/" + name
	}
	fmt.Fprintf(w, "vm %s -> branch %s (abc): 1 commits\n", name, branch)
	return PullResult{Branch: branch, Commit: "abc", Commits: []string{"abc fix"}}, nil
}

// connect serves s to an in-memory client.
func connect(t *testing.T, s *Server, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	ct, st := mcp.NewInMemoryTransports()
	ctx := context.Background()
	ss, err := s.Connect(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "v0"}, opts)
	cs, err := c.Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close(); ss.Wait(); s.Close() })
	return cs
}

func newServer(t *testing.T, f *fakeDaemon, o Options) *Server {
	if o.Checkout == "" {
		o.Checkout, o.Git = checkout, true
	}
	o.Key = f.user
	if o.KillAfter == 0 {
		o.KillAfter = 500 * time.Millisecond
	}
	return New(f, o)
}

// mine is a running VM banger mcp made for the test checkout.
func mine(name string) api.VM {
	return api.VM{Name: name, State: api.VMRunning, MadeBy: &api.MadeBy{Tool: Tool, Checkout: checkout}, Work: &api.Work{Source: checkout}}
}

// call calls a tool and decodes its structured result into out; it
// returns the text of the result and whether it is a tool error.
func call(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any, out any) (string, bool) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: protocol error: %v", tool, err)
	}
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			text.WriteString(tc.Text)
		}
	}
	if out != nil && !res.IsError {
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: structured result %s: %v", tool, b, err)
		}
	}
	return text.String(), res.IsError
}

func TestToolsListedWithSchemasAndTeachingDescriptions(t *testing.T) {
	cs := connect(t, newServer(t, newFakeDaemon(t), Options{}), nil)
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"sandbox_create", "sandbox_diff", "sandbox_exec", "sandbox_list", "sandbox_list_files", "sandbox_logs",
		"sandbox_pull", "sandbox_read_file", "sandbox_remove", "sandbox_report", "sandbox_start", "sandbox_stop", "sandbox_write_file"}
	var got []string
	for _, tl := range res.Tools {
		got = append(got, tl.Name)
		if len(tl.Description) < 80 {
			t.Errorf("%s: description too thin to teach an agent: %q", tl.Name, tl.Description)
		}
		if tl.InputSchema == nil || tl.OutputSchema == nil {
			t.Errorf("%s: missing schemas", tl.Name)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("tools = %v, want %v", got, want)
	}
	exec := res.Tools[slices.IndexFunc(res.Tools, func(tl *mcp.Tool) bool { return tl.Name == "sandbox_exec" })]
	b, _ := json.Marshal(exec.InputSchema)
	var schema struct {
		Required   []string                  `json:"required"`
		Properties map[string]map[string]any `json:"properties"`
	}
	json.Unmarshal(b, &schema)
	if !slices.Equal(schema.Required, []string{"command"}) {
		t.Errorf("sandbox_exec requires %v, want only command", schema.Required)
	}
	for _, p := range []string{"vm", "command", "workdir", "env", "timeout_seconds", "max_output_bytes"} {
		if d, _ := schema.Properties[p]["description"].(string); d == "" {
			t.Errorf("sandbox_exec argument %s has no description", p)
		}
	}
	if !strings.Contains(cs.InitializeResult().Instructions, checkout) {
		t.Errorf("instructions do not say which checkout: %q", cs.InitializeResult().Instructions)
	}
}

func TestExecArgumentsAndErrors(t *testing.T) {
	f := newFakeDaemon(t)
	f.add(mine("box"))
	cs := connect(t, newServer(t, f, Options{}), nil)
	dir := t.TempDir()

	var r ExecResult
	text, isErr := call(t, cs, "sandbox_exec", map[string]any{
		"vm": "box", "command": `echo "$GREETING from $(pwd)"; echo oops >&2; exit 3`,
		"workdir": dir, "env": map[string]string{"GREETING": "hello 'there'"},
	}, &r)
	if isErr || r.ExitCode != 3 || r.Stdout != "hello 'there' from "+dir+"\n" || r.Stderr != "oops\n" || r.TimedOut {
		t.Fatalf("exec: %+v (%s)", r, text)
	}
	if !strings.Contains(text, "exit code 3") || !strings.Contains(text, "--- stderr ---\noops") {
		t.Errorf("text result: %q", text)
	}
	// The command is on the sandbox's activity record, and
	// sandbox_report reads it back.
	var rep Report
	text, isErr = call(t, cs, "sandbox_report", map[string]any{"vm": "box"}, &rep)
	if isErr || len(rep.Events) != 1 {
		t.Fatalf("sandbox_report: %+v (%s)", rep, text)
	}
	if e := rep.Events[0]; e.Kind != api.ActCommand || e.Via != api.ViaMCP || e.Exit == nil || *e.Exit != 3 || e.Dir != dir ||
		len(e.Argv) != 3 || e.Argv[0] != "sh" || !strings.Contains(e.Argv[2], "GREETING") || e.OutputBytes != int64(len(r.Stdout)+len(r.Stderr)) {
		t.Errorf("the recorded command: %+v", e)
	}
	if !strings.Contains(text, "commands     1 run through banger, 1 failed") || !strings.Contains(text, "exec: sh -c") || rep.Changes != nil {
		t.Errorf("sandbox_report's text: %s", text)
	}
	text, _ = call(t, cs, "sandbox_report", map[string]any{"vm": "box", "changes": true}, &rep)
	if rep.Changes == nil || len(rep.Changes.Added) != 1 || !strings.Contains(text, "+ /root/outside.txt (file, 8 B)") {
		t.Errorf("sandbox_report with changes: %+v\n%s", rep.Changes, text)
	}
	// The only sandbox in scope needs no name; the default directory is
	// /work (where this host has none, cd says so).
	call(t, cs, "sandbox_exec", map[string]any{"command": "pwd"}, &r)
	if r.Stdout != "/work\n" && !strings.Contains(r.Stderr, "/work") {
		t.Errorf("default workdir: %+v, want /work", r)
	}

	for _, tt := range []struct {
		name string
		args map[string]any
		want string
	}{
		{"empty command", map[string]any{"command": "  "}, "command is empty"},
		{"missing command", map[string]any{}, "command"},
		{"bad env name", map[string]any{"command": "true", "env": map[string]string{"A=B": "x"}}, `"A=B" is not a variable name`},
		{"negative timeout", map[string]any{"command": "true", "timeout_seconds": -1}, "timeout_seconds -1 is negative"},
		{"negative bound", map[string]any{"command": "true", "max_output_bytes": -5}, "max_output_bytes -5 is negative"},
		{"unknown argument", map[string]any{"command": "true", "shell": "bash"}, "shell"},
		{"wrong type", map[string]any{"command": 42}, "command"},
		{"no such vm", map[string]any{"vm": "nope", "command": "true"}, `no sandbox named "nope"`},
		{"NUL in workdir", map[string]any{"command": "true", "workdir": "/tmp/a\x00b"}, "NUL"},
	} {
		text, isErr := call(t, cs, "sandbox_exec", tt.args, nil)
		if !isErr || !strings.Contains(text, tt.want) {
			t.Errorf("%s: error %v, %q; want a tool error with %q", tt.name, isErr, text, tt.want)
		}
	}
}

func TestExecBoundsHugeOutput(t *testing.T) {
	f := newFakeDaemon(t)
	f.add(mine("box"))
	cs := connect(t, newServer(t, f, Options{}), nil)
	var r ExecResult
	const huge = 50 << 20
	text, isErr := call(t, cs, "sandbox_exec", map[string]any{
		"vm": "box", "workdir": "/", "command": fmt.Sprintf("head -c %d /dev/zero | tr '\\0' x; echo; echo the end; echo small >&2", huge),
	}, &r)
	if isErr || r.ExitCode != 0 {
		t.Fatalf("exec: %v %q", isErr, text)
	}
	if len(r.Stdout) > defaultOutput+100 || len(text) > 2*defaultOutput+1000 {
		t.Fatalf("50 MiB of stdout came back as %d bytes (text %d)", len(r.Stdout), len(text))
	}
	wantMore := int64(huge+len("\nthe end\n")) - int64(defaultOutput)
	if r.StdoutTruncated != wantMore || !strings.Contains(r.Stdout, fmt.Sprintf("[... truncated, %d bytes more ...]", wantMore)) {
		t.Errorf("truncation: %d bytes left out, note in stdout: %v; want %d", r.StdoutTruncated, strings.Contains(r.Stdout, "truncated"), wantMore)
	}
	if !strings.HasPrefix(r.Stdout, "xxxx") || !strings.HasSuffix(r.Stdout, "x\nthe end\n") {
		t.Errorf("kept neither the beginning nor the end: %q ... %q", r.Stdout[:10], r.Stdout[len(r.Stdout)-20:])
	}
	if r.Stderr != "small\n" || r.StderrTruncated != 0 {
		t.Errorf("stderr: %q, %d", r.Stderr, r.StderrTruncated)
	}
	// A bound asked for is kept; the server is fine afterwards.
	call(t, cs, "sandbox_exec", map[string]any{"workdir": "/", "command": "seq 1 1000", "max_output_bytes": 100}, &r)
	if len(r.Stdout) > 200 || !strings.HasPrefix(r.Stdout, "1\n2\n") || !strings.HasSuffix(r.Stdout, "999\n1000\n") {
		t.Errorf("max_output_bytes 100: %q", r.Stdout)
	}
}

func TestExecTimeoutAndCancellationStopTheCommand(t *testing.T) {
	f := newFakeDaemon(t)
	f.add(mine("box"))
	var progress []string
	var mu sync.Mutex
	cs := connect(t, newServer(t, f, Options{ProgressEvery: 100 * time.Millisecond}), &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			progress = append(progress, r.Params.Message)
			mu.Unlock()
		},
	})
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// The child ignores SIGINT: only the kill that follows ends it.
	script := fmt.Sprintf("(trap '' INT; echo started; exec sleep 300) & echo $! > %s; wait", pidFile)

	var r ExecResult
	start := time.Now()
	text, isErr := call(t, cs, "sandbox_exec", map[string]any{"workdir": dir, "command": script, "timeout_seconds": 1}, &r)
	if isErr || !r.TimedOut || time.Since(start) > 20*time.Second {
		t.Fatalf("timeout: %+v %q after %s", r, text, time.Since(start))
	}
	if !strings.Contains(text, "still running after 1s") || r.ExitCode < 128 {
		t.Errorf("timeout result: exit %d, %q", r.ExitCode, text)
	}
	waitGone(t, pidFile)

	// A canceled call: the client's cancel reaches the command.
	ctx, cancel := context.WithCancel(context.Background())
	params := &mcp.CallToolParams{Name: "sandbox_exec", Arguments: map[string]any{"workdir": dir, "command": script}}
	params.SetProgressToken("exec-1")
	done := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, params)
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(progress)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	if len(progress) == 0 || !strings.Contains(progress[0], "running for") {
		t.Errorf("progress of a running command: %q", progress)
	}
	mu.Unlock()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled call: %v", err)
	}
	waitGone(t, pidFile)
	// The server goes on serving.
	call(t, cs, "sandbox_exec", map[string]any{"workdir": dir, "command": "echo ok"}, &r)
	if r.Stdout != "ok\n" {
		t.Errorf("after cancellation: %+v", r)
	}
}

// waitGone waits for the process whose PID is in pidFile to end.
func waitGone(t *testing.T, pidFile string) {
	t.Helper()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(pidFile)
		if pid, _ = strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
			break
		}
	}
	if pid == 0 {
		t.Fatal("the command never wrote its child's pid")
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			os.Remove(pidFile)
			return
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("the command's child (pid %d) outlived its call", pid)
}

func TestFiles(t *testing.T) {
	f := newFakeDaemon(t)
	f.add(mine("box"))
	cs := connect(t, newServer(t, f, Options{}), nil)
	dir := t.TempDir()
	p := filepath.Join(dir, "new", "deep", "run.sh")

	var w Written
	if text, isErr := call(t, cs, "sandbox_write_file", map[string]any{"path": p, "content": "#!/bin/sh\necho hi\n", "mode": "0755"}, &w); isErr || w.Size != 18 {
		t.Fatalf("write: %q %+v", text, w)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("written file: %v, %v", st, err)
	}
	call(t, cs, "sandbox_write_file", map[string]any{"path": p, "content": "echo more\n", "append": true}, &w)
	if b, _ := os.ReadFile(p); string(b) != "#!/bin/sh\necho hi\necho more\n" {
		t.Errorf("after append: %q", b)
	}
	bin := []byte{0, 1, 2, 0xff, 0xfe}
	call(t, cs, "sandbox_write_file", map[string]any{"path": filepath.Join(dir, "blob"), "content": base64.StdEncoding.EncodeToString(bin), "base64": true}, &w)

	var fc FileContent
	text, _ := call(t, cs, "sandbox_read_file", map[string]any{"path": p}, &fc)
	if fc.Content != "#!/bin/sh\necho hi\necho more\n" || fc.Size != 28 || fc.Remaining != 0 || text != fc.Content {
		t.Errorf("read: %+v, text %q", fc, text)
	}
	text, _ = call(t, cs, "sandbox_read_file", map[string]any{"path": p, "offset": 10, "max_bytes": 5}, &fc)
	if fc.Content != "echo " || fc.Remaining != 13 || !strings.Contains(text, "read on with offset 15") {
		t.Errorf("read a window: %+v, %q", fc, text)
	}
	call(t, cs, "sandbox_read_file", map[string]any{"path": filepath.Join(dir, "blob")}, &fc)
	if got, _ := base64.StdEncoding.DecodeString(fc.Content); fc.Encoding != "base64" || string(got) != string(bin) {
		t.Errorf("binary read: %+v", fc)
	}

	os.MkdirAll(filepath.Join(dir, "repo", ".git", "objects"), 0o755)
	os.WriteFile(filepath.Join(dir, "repo", "a.go"), []byte("package a\n"), 0o644)
	var l Listing
	text, _ = call(t, cs, "sandbox_list_files", map[string]any{"path": dir, "recursive": true}, &l)
	var paths []string
	for _, e := range l.Entries {
		paths = append(paths, strings.TrimPrefix(e.Path, dir+"/")+":"+e.Type)
	}
	want := []string{"blob:file", "new:dir", "repo:dir", "new/deep:dir", "repo/.git:dir", "repo/a.go:file", "new/deep/run.sh:file"}
	if !slices.Equal(paths, want) {
		t.Errorf("recursive listing = %v, want %v (.git not entered)", paths, want)
	}
	if !strings.Contains(text, "repo/a.go") {
		t.Errorf("listing text: %q", text)
	}
	call(t, cs, "sandbox_list_files", map[string]any{"path": dir, "recursive": true, "max_entries": 2}, &l)
	if len(l.Entries) != 2 || l.More != 5 {
		t.Errorf("bounded listing: %d entries, %d more", len(l.Entries), l.More)
	}

	for _, tt := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"sandbox_read_file", map[string]any{"path": filepath.Join(dir, "missing")}, "no such file or directory"},
		{"sandbox_read_file", map[string]any{"path": dir}, "it is a directory"},
		{"sandbox_read_file", map[string]any{"path": ""}, "path is empty"},
		{"sandbox_read_file", map[string]any{"path": p, "offset": -1}, "offset -1 is negative"},
		{"sandbox_write_file", map[string]any{"path": dir, "content": "x"}, "it is a directory"},
		{"sandbox_write_file", map[string]any{"path": dir + "/sub/", "content": "x"}, "names a directory"},
		{"sandbox_write_file", map[string]any{"path": p, "content": "x", "mode": "rwx"}, "octal permissions"},
		{"sandbox_write_file", map[string]any{"path": p, "content": "%%%", "base64": true}, "not valid base64"},
		{"sandbox_write_file", map[string]any{"path": "/proc/self/nope/x", "content": "x"}, "/proc/self/nope"},
		{"sandbox_list_files", map[string]any{"path": filepath.Join(dir, "missing")}, "no such file or directory"},
	} {
		text, isErr := call(t, cs, tt.tool, tt.args, nil)
		if !isErr || !strings.Contains(text, tt.want) {
			t.Errorf("%s %v: %v %q; want a tool error with %q", tt.tool, tt.args, isErr, text, tt.want)
		}
	}
	if b, _ := os.ReadFile(p); string(b) != "#!/bin/sh\necho hi\necho more\n" {
		t.Errorf("refused writes changed the file: %q", b)
	}
}

func TestGuestPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "/work",
		"src/main.go":       "/work/src/main.go",
		"./a/../b":          "/work/b",
		"/etc/hosts":        "/etc/hosts",
		"../../etc/passwd":  "/etc/passwd", // the guest is the agent's own: any path in it is fair
		"/work/x/":          "/work/x",
		"/a//b/./c":         "/a/b/c",
		"dir with spaces/x": "/work/dir with spaces/x",
	} {
		if got, err := guestPath(in); err != nil || got != want {
			t.Errorf("guestPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestScope(t *testing.T) {
	f := newFakeDaemon(t)
	f.add(mine("mine-1"))
	f.add(api.VM{Name: "mine-2", State: api.VMStopped, MadeBy: &api.MadeBy{Tool: Tool, Checkout: checkout}})
	f.add(api.VM{Name: "other-checkout", State: api.VMRunning, MadeBy: &api.MadeBy{Tool: Tool, Checkout: "/home/dev/other"}})
	f.add(api.VM{Name: "by-hand", State: api.VMRunning})
	cs := connect(t, newServer(t, f, Options{}), nil)

	var l Sandboxes
	call(t, cs, "sandbox_list", nil, &l)
	var names []string
	for _, s := range l.Sandboxes {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"mine-1", "mine-2"}) {
		t.Errorf("sandbox_list = %v, want only this checkout's", names)
	}
	for _, tool := range []string{"sandbox_exec", "sandbox_read_file", "sandbox_write_file", "sandbox_list_files", "sandbox_stop", "sandbox_start", "sandbox_remove", "sandbox_logs", "sandbox_diff", "sandbox_pull"} {
		for _, vm := range []string{"other-checkout", "by-hand"} {
			args := map[string]any{"vm": vm}
			switch tool {
			case "sandbox_exec":
				args["command"] = "true"
			case "sandbox_read_file":
				args["path"] = "/etc/hostname"
			case "sandbox_write_file":
				args["path"], args["content"] = "/tmp/x", "x"
			}
			text, isErr := call(t, cs, tool, args, nil)
			if !isErr || !strings.Contains(text, "was not made by banger mcp for "+checkout) {
				t.Errorf("%s on %s: %v %q; want out of scope", tool, vm, isErr, text)
			}
		}
	}
	if len(f.removed) != 0 {
		t.Fatalf("removed out of scope: %v", f.removed)
	}
	// Two in scope: a call without a name says which there are.
	if text, isErr := call(t, cs, "sandbox_exec", map[string]any{"command": "true"}, nil); !isErr || !strings.Contains(text, "mine-1, mine-2") {
		t.Errorf("ambiguous: %q", text)
	}
	if text, isErr := call(t, cs, "sandbox_exec", map[string]any{"vm": "mine-2", "command": "true"}, nil); !isErr || !strings.Contains(text, "is stopped: start it with sandbox_start") {
		t.Errorf("exec on a stopped sandbox: %q", text)
	}

	all := connect(t, newServer(t, f, Options{All: true}), nil)
	call(t, all, "sandbox_list", nil, &l)
	if len(l.Sandboxes) != 4 {
		t.Errorf("--all lists %d VMs, want 4", len(l.Sandboxes))
	}
	var r ExecResult
	if text, isErr := call(t, all, "sandbox_exec", map[string]any{"vm": "by-hand", "workdir": "/", "command": "echo reached"}, &r); isErr || r.Stdout != "reached\n" {
		t.Errorf("--all exec: %q", text)
	}
}

func TestCreateRecordsScopeSeedsAndReportsProgress(t *testing.T) {
	f := newFakeDaemon(t)
	var progress []string
	var mu sync.Mutex
	cs := connect(t, newServer(t, f, Options{}), &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			progress = append(progress, r.Params.Message)
			mu.Unlock()
		},
	})
	params := &mcp.CallToolParams{Name: "sandbox_create", Arguments: map[string]any{"name": "agent-1", "cpus": 4, "memory": "2G", "disk": "20G", "work_disk": "8G"}}
	params.SetProgressToken("create-1")
	res, err := cs.CallTool(context.Background(), params)
	if err != nil || res.IsError {
		t.Fatalf("create: %v %+v", err, res)
	}
	got := f.created[0]
	if got.Name != "agent-1" || got.CPUs != 4 || got.MemoryMB != 2048 || got.Disk != "20G" || !got.Start ||
		got.MadeBy == nil || *got.MadeBy != (api.MadeBy{Tool: Tool, Checkout: checkout}) || f.seeded[0] == nil || f.seeded[0].Disk != "8G" {
		t.Errorf("create request: %+v, seeded %v", got, f.seeded)
	}
	if len(got.AuthorizedKeys) != 1 || !strings.HasPrefix(got.AuthorizedKeys[0], "ssh-ed25519 ") {
		t.Errorf("the user's key is not authorized: %v", got.AuthorizedKeys)
	}
	text := res.Content[0].(*mcp.TextContent).Text
	if !strings.Contains(text, "sandbox agent-1 is running") || !strings.Contains(text, "/work holds "+checkout) {
		t.Errorf("create text: %q", text)
	}
	// Notifications are handled apart from the response: wait for them.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		ok := slices.Contains(progress, "pulling image debian-bookworm") && slices.Contains(progress, "pull: 5.0 MiB of 10 MiB")
		got := slices.Clone(progress)
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("progress = %q", got)
			break
		}
	}

	// no_workdir, and a server outside a checkout, seed nothing.
	call(t, cs, "sandbox_create", map[string]any{"no_workdir": true}, nil)
	plain := connect(t, newServer(t, f, Options{Checkout: "/tmp/notes"}), nil)
	call(t, plain, "sandbox_create", map[string]any{"name": "plain"}, nil)
	if f.seeded[1] != nil || f.seeded[2] != nil || f.created[2].MadeBy.Checkout != "/tmp/notes" {
		t.Errorf("seeded = %v, made_by %+v", f.seeded, f.created[2].MadeBy)
	}
	for _, tt := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"memory": "lots"}, "memory"},
		{map[string]any{"cpus": -1}, "at least 1 CPU"},
	} {
		if text, isErr := call(t, cs, "sandbox_create", tt.args, nil); !isErr || !strings.Contains(text, tt.want) {
			t.Errorf("create %v: %q, want %q", tt.args, text, tt.want)
		}
	}

	// Canceling a create reaches the daemon's operation.
	f.block = true
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "sandbox_create", Arguments: map[string]any{}}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled create: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		f.mu.Lock()
		c := f.canceled
		f.mu.Unlock()
		if c {
			return
		}
	}
	t.Error("the daemon's create never saw the cancellation")
}

func TestWorkToolsAndLifecycle(t *testing.T) {
	f := newFakeDaemon(t)
	f.add(mine("box"))
	noWork := mine("bare")
	noWork.Work = nil
	f.add(noWork)
	cs := connect(t, newServer(t, f, Options{}), nil)

	var d Diff
	text, _ := call(t, cs, "sandbox_diff", map[string]any{"vm": "box"}, &d)
	if d.Truncated == 0 || len(text) > defaultRead+100 || !strings.Contains(text, "truncated") {
		t.Errorf("a long diff: %d bytes back, %d left out", len(text), d.Truncated)
	}
	call(t, cs, "sandbox_diff", map[string]any{"vm": "box", "stat_only": true}, &d)
	if d.Diff != " README.md | 1 +\n" {
		t.Errorf("stat: %q", d.Diff)
	}
	call(t, cs, "sandbox_diff", map[string]any{"vm": "box", "since_seed": true}, &d)
	if d.Diff != "# changes in vm since the seed\n" {
		t.Errorf("since_seed: %q", d.Diff)
	}
	var p PullResult
	text, _ = call(t, cs, "sandbox_pull", map[string]any{"vm": "box"}, &p)
	if p.Branch != "banger/box" || !strings.Contains(text, "git log -p banger/box") {
		t.Errorf("pull: %+v %q", p, text)
	}
	// An agent writes only under banger/, force or not: never the
	// human's main, nor a branch named to look like one.
	for _, branch := range []string{"main", "refs/heads/main", "banger/", "bangerx/y", "master"} {
		text, isErr := call(t, cs, "sandbox_pull", map[string]any{"vm": "box", "branch": branch, "force": true}, nil)
		if !isErr || !strings.Contains(text, "only branches under banger/") {
			t.Errorf("pull to %q: %q", branch, text)
		}
	}
	call(t, cs, "sandbox_pull", map[string]any{"vm": "box", "branch": "banger/fix-1", "force": true}, &p)
	if f.pulled[len(f.pulled)-1] != "banger/fix-1" || len(f.pulled) != 2 {
		t.Errorf("pulls that reached the daemon: %q", f.pulled)
	}
	for _, tool := range []string{"sandbox_diff", "sandbox_pull"} {
		if text, isErr := call(t, cs, tool, map[string]any{"vm": "bare"}, nil); !isErr || !strings.Contains(text, "has no /work") {
			t.Errorf("%s without work: %q", tool, text)
		}
	}
	var lg Logs
	text, _ = call(t, cs, "sandbox_logs", map[string]any{"vm": "box", "lines": 2}, &lg)
	if lg.Console != "console line 299\nconsole line 300\n" || lg.More != 298 || !strings.Contains(text, "298 earlier lines") {
		t.Errorf("logs: %+v", lg)
	}
	var sb Sandbox
	call(t, cs, "sandbox_stop", map[string]any{"vm": "box"}, &sb)
	if sb.State != api.VMStopped {
		t.Errorf("stop: %+v", sb)
	}
	if text, isErr := call(t, cs, "sandbox_remove", map[string]any{"vm": "box"}, nil); !isErr || !strings.Contains(text, "never pulled") {
		t.Errorf("remove of unpulled work: %q", text)
	}
	var rm Removed
	if text, isErr := call(t, cs, "sandbox_remove", map[string]any{"vm": "box", "force": true}, &rm); isErr || rm.Name != "box" || !slices.Contains(f.removed, "box") {
		t.Errorf("remove --force: %q, removed %v", text, f.removed)
	}
}

// The person starting the server picks the sandboxes' network; the agent
// gets it on every create, and is told what it may reach.
func TestCreateUsesTheServersNetwork(t *testing.T) {
	f := newFakeDaemon(t)
	s := newServer(t, f, Options{Network: "bridge", Egress: "allow=github.com"})
	cs := connect(t, s, nil)
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools.Tools {
		if tool.Name == "sandbox_create" && !strings.Contains(tool.Description, "reach only these hosts (egress allow=github.com)") {
			t.Errorf("sandbox_create does not tell the agent its egress: %s", tool.Description)
		}
	}
	if res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "sandbox_create", Arguments: map[string]any{"name": "net-1"}}); err != nil || res.IsError {
		t.Fatalf("create: %v %+v", err, res)
	}
	if got := f.created[0]; got.Network != "bridge" || got.Egress != "allow=github.com" {
		t.Errorf("create request network %q egress %q", got.Network, got.Egress)
	}
}
