package mcpserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/front/client"
	"github.com/banger-dev/banger/internal/front/report"
	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/guest/guestssh"
	"github.com/banger-dev/banger/internal/kit/units"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Bounds on what a call returns: an agent's context is small, and a
// guest is not trusted to keep its output short.
const (
	defaultOutput = 32 << 10
	maxOutput     = 1 << 20
	defaultRead   = 64 << 10
	maxRead       = 1 << 20
	maxWrite      = 16 << 20
	defaultList   = 500
	maxList       = 5000
	defaultLines  = 100
	maxLines      = 5000
	defaultExec   = 10 * time.Minute
	maxExec       = 2 * time.Hour
	workDir       = "/work"
)

func text(format string, args ...any) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, args...)}}}
}

// fail makes err a tool error (a result with isError, not a protocol
// error) with banger's own message: the agent reads it and can correct
// itself.
func fail[Out any](err error) (*mcp.CallToolResult, Out, error) {
	var zero Out
	msg := errdefs.Message(err)
	for _, s := range []error{errOutOfScope, client.ErrDaemonUnreachable} {
		msg = strings.ReplaceAll(msg, ": "+s.Error(), "")
	}
	return nil, zero, errors.New(msg)
}

func (s *Server) addTools() {
	srv := s.mcp
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_create", Title: "Create a sandbox VM", Description: s.createDoc(),
		Annotations: &mcp.ToolAnnotations{OpenWorldHint: ptr(false)}}, s.create)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_exec", Title: "Run a command in a sandbox", Description: `Run a shell command in a running sandbox, as root, with /bin/sh -c, and return its exit code, stdout and stderr. The working directory is /work (your copy of the checkout) unless you give another. Each stream is bounded: beyond max_output_bytes you get its beginning and its end with "[... truncated, N bytes more ...]" between them, so pipe long output through tail, grep or head, or into a file you read with sandbox_read_file. Nothing is read from stdin. A command still running after timeout_seconds (default 600) is interrupted, then killed with everything it started; so is one whose call is canceled. Processes it leaves running in the background after it exits keep running (start servers with nohup ... &). Use it to build, test, install packages (apt-get, apk, pip), and to commit with git in /work.`,
		Annotations: &mcp.ToolAnnotations{DestructiveHint: ptr(true), OpenWorldHint: ptr(true)}}, s.exec)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_read_file", Title: "Read a file in a sandbox", Description: `Read a file in a running sandbox. A relative path is relative to /work. Returns up to max_bytes (default 64 KiB) from offset; read on with a larger offset when "remaining" is not 0. Text comes back as it is; a file that is not UTF-8 text comes back base64-encoded, with encoding "base64".`,
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, s.readFile)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_write_file", Title: "Write a file in a sandbox", Description: `Write a whole file in a running sandbox, creating it and its parent directories, replacing what was there (or adding to its end with append). A relative path is relative to /work. Prefer this to echo or heredocs through sandbox_exec: the content arrives byte for byte, with no shell quoting.`,
		Annotations: &mcp.ToolAnnotations{DestructiveHint: ptr(true), IdempotentHint: true}}, s.writeFile)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_list_files", Title: "List files in a sandbox", Description: `List a directory in a running sandbox (default /work): each entry's path, type, size and mode. With recursive, the whole tree below it, .git directories shown but not entered. At most max_entries (default 500); "more" says how many were left out.`,
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, s.listFiles)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_diff", Title: "Show a sandbox's work", Description: `Show the work done in a sandbox's /work since it was seeded, as a human reviewing it will see it (banger vm diff): the commits made in the sandbox (git log --stat), then the uncommitted changes (git diff, new files included). Works on running and stopped sandboxes and changes nothing. Use it before sandbox_pull to check what you hand over.`,
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, s.diff)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_pull", Title: "Hand a sandbox's work back as a branch", Description: `Bring the work in a sandbox's /work back into the host repository as a git branch under banger/ (default banger/NAME; other branches are refused): the commits made in the sandbox, and uncommitted changes as one more commit on top. The host's working tree, index and current branch are not touched: a human reviews and merges the branch. An existing branch is refused unless force. Returns the branch, its commit and the commits on it.`,
		Annotations: &mcp.ToolAnnotations{DestructiveHint: ptr(false), IdempotentHint: true}}, s.pull)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_start", Title: "Start a stopped sandbox", Description: `Boot a stopped sandbox again and wait until it is ready. Its disks kept every change; processes did not survive the stop.`,
		Annotations: &mcp.ToolAnnotations{DestructiveHint: ptr(false), IdempotentHint: true}}, s.start)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_stop", Title: "Stop a sandbox", Description: `Power a sandbox off cleanly. Its disks keep every change, and sandbox_diff and sandbox_pull still work on it; sandbox_start boots it again. Stop sandboxes you are not using: they hold memory and CPU.`,
		Annotations: &mcp.ToolAnnotations{DestructiveHint: ptr(false), IdempotentHint: true}}, s.stop)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_remove", Title: "Remove a sandbox", Description: `Remove a sandbox and its disks, running or not. A sandbox whose work was never pulled is refused unless force: pull it first with sandbox_pull, or pass force to drop it.`,
		Annotations: &mcp.ToolAnnotations{DestructiveHint: ptr(true), IdempotentHint: true}}, s.remove)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_list", Title: "List sandboxes", Description: s.listDoc(),
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, s.listVMs)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_report", Title: "What was done in a sandbox", Description: `The sandbox's activity record, kept on the host (the sandbox cannot change it): the commands run through banger with their exit status and duration, the files written into it, each name it looked up (allowed or refused by its egress policy), connections through banger's proxy, uses of secrets and attempts to send their placeholders elsewhere, and its life (create, start, stop, pull). Counts first, then the timeline; the structured result has every event. Works on stopped sandboxes.`,
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, s.report)
	mcp.AddTool(srv, &mcp.Tool{Name: "sandbox_logs", Title: "Read a sandbox's console", Description: `The last lines of a sandbox's console: kernel and guest agent messages from every boot. Look here when a sandbox does not start or misbehaves.`,
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, s.logs)
}

func ptr[T any](v T) *T { return &v }

func (s *Server) createDoc() string {
	seed := `Unless no_workdir, /work in the sandbox holds a copy of ` + s.o.Checkout + `: tracked, modified and untracked files (not ignored ones) and its whole git history, so git status there shows what it shows on the host.`
	if !s.o.Git {
		seed = s.o.Checkout + ` is not a git checkout: the sandbox gets no /work.`
	}
	return `Create and boot a sandbox: a disposable Linux microVM with its own kernel, where you are root and nothing you do reaches this host. ` + seed + s.networkDoc() + ` The image (default debian-bookworm; others such as alpine-3.20) is pulled on first use, which can take minutes; progress is reported. Returns the sandbox's name for the other tools. Sandboxes outlive this session: see sandbox_list before making another.`
}

// networkDoc tells the agent what its sandboxes may reach, as the person
// who started the server chose.
func (s *Server) networkDoc() string { return s.egressDoc() + s.secretsDoc() }

func (s *Server) egressDoc() string {
	e := s.o.Egress
	switch {
	case s.o.Network == api.NetNone:
		return ` Sandboxes have no network: nothing outside is reachable.`
	case e == "deny":
		return ` Sandboxes reach no host outside (egress deny): package installs from the internet fail; work with what the image and /work hold.`
	case strings.HasPrefix(e, "allow="):
		return ` Sandboxes reach only these hosts (egress ` + e + `): other names do not resolve and their addresses are refused; ask the user if you need another.`
	case strings.HasPrefix(e, "from="):
		return ` Sandboxes reach only the hosts that VM ` + strings.TrimPrefix(e, "from=") + ` looked up (egress ` + e + `); other names do not resolve.`
	}
	return ""
}

// secretsDoc tells the agent where its secrets' placeholders are: it uses
// them as it would the real values, over HTTPS through the proxy the
// sandbox's HTTPS_PROXY names.
func (s *Server) secretsDoc() string {
	if len(s.o.Secrets) == 0 {
		return ""
	}
	var parts []string
	for _, sec := range s.o.Secrets {
		where := "$" + sec.Env
		if sec.Env == "" {
			where = "~/" + sec.File
		}
		parts = append(parts, sec.Name+" in "+where+" (for "+strings.Join(sec.Hosts, ", ")+")")
	}
	return ` Secrets: ` + strings.Join(parts, "; ") + `. They hold placeholders: use them as the real tokens in HTTPS requests to those hosts (the sandbox's HTTPS_PROXY adds the values on the host); sent anywhere else they are worthless, and the attempt is recorded.`
}

func (s *Server) listDoc() string {
	if s.o.All {
		return `List every banger VM on this host: name, state, image, resources, whether its work was pulled, and which tool made it.`
	}
	return `List the sandboxes banger mcp made for ` + s.o.Checkout + `, from this session or earlier ones: name, state, image, resources, and whether their work was pulled.`
}

// Sandbox is a VM as the tools report it.
type Sandbox struct {
	Name      string `json:"name"`
	State     string `json:"state" jsonschema:"running or stopped (or starting, stopping)"`
	Image     string `json:"image"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	DiskBytes int64  `json:"disk_bytes"`
	Workdir   string `json:"workdir,omitempty" jsonschema:"/work when the sandbox was seeded from a checkout"`
	Work      string `json:"work,omitempty" jsonschema:"seeded (work never pulled) or pulled"`
	MadeBy    string `json:"made_by,omitempty" jsonschema:"the tool and checkout the sandbox was made for"`
	Created   string `json:"created"`
}

func sandbox(v api.VM) Sandbox {
	sb := Sandbox{Name: v.Name, State: v.State, Image: v.Image, CPUs: v.CPUs, MemoryMiB: v.MemoryMB, DiskBytes: v.DiskBytes,
		Created: v.CreatedAt.UTC().Format(time.RFC3339)}
	if v.Work != nil {
		sb.Workdir, sb.Work = workDir, "seeded"
		if !v.Work.PulledAt.IsZero() {
			sb.Work = "pulled as " + v.Work.PulledBranch
		}
	}
	if m := v.MadeBy; m != nil {
		sb.MadeBy = strings.TrimSpace("banger " + m.Tool + " for " + m.Checkout)
	}
	return sb
}

// CreateArgs are sandbox_create's arguments.
type CreateArgs struct {
	Name      string `json:"name,omitempty" jsonschema:"a name for the sandbox (lower-case letters, digits, '-'); default: generated, like swift-otter"`
	Image     string `json:"image,omitempty" jsonschema:"the image to boot (default debian-bookworm); pulled when not on this host"`
	CPUs      int    `json:"cpus,omitempty" jsonschema:"virtual CPUs (default 2)"`
	Memory    string `json:"memory,omitempty" jsonschema:"memory, in MiB or with a unit: 2048, 2G (default 1G)"`
	Disk      string `json:"disk,omitempty" jsonschema:"root disk size, such as 20G (default 10G); unused room costs nothing"`
	NoWorkdir bool   `json:"no_workdir,omitempty" jsonschema:"start with no /work, instead of a copy of the checkout"`
	WorkDisk  string `json:"work_disk,omitempty" jsonschema:"size of the /work disk, such as 8G (default: it grows to hold the checkout with room to work)"`
	Init      string `json:"init,omitempty" jsonschema:"the guest's init system: banger (default, fastest) or systemd (the image's own, for units and systemctl; debian-bookworm-dev has it)"`
}

// Created is what sandbox_create returns.
type Created struct {
	Sandbox
	SeededFrom string `json:"seeded_from,omitempty" jsonschema:"the host checkout copied into /work"`
}

func (s *Server) create(ctx context.Context, req *mcp.CallToolRequest, in CreateArgs) (*mcp.CallToolResult, Created, error) {
	cr := api.VMCreateRequest{Name: in.Name, Image: in.Image, CPUs: in.CPUs, Disk: in.Disk, Start: true, Init: in.Init,
		Network: s.o.Network, Egress: s.o.Egress, MadeBy: &api.MadeBy{Tool: Tool, Checkout: s.o.Checkout}}
	if in.CPUs < 0 {
		return fail[Created](fmt.Errorf("cpus %d: a sandbox needs at least 1 CPU: %w", in.CPUs, errdefs.ErrInvalid))
	}
	if in.Memory != "" {
		n, err := units.ParseSize(in.Memory, units.MiB)
		if err != nil {
			return fail[Created](fmt.Errorf("memory: %w", err))
		}
		if cr.MemoryMB = int(n / units.MiB); cr.MemoryMB == 0 {
			cr.MemoryMB = -1 // let the daemon say it is too little
		}
	}
	if s.o.Key != nil {
		cr.AuthorizedKeys = []string{strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.o.Key.PublicKey())))}
	}
	var seed *Seed
	if s.o.Git && !in.NoWorkdir {
		seed = &Seed{Disk: in.WorkDisk}
	}
	v, err := s.d.Create(ctx, cr, seed, progress(ctx, req))
	if err != nil {
		return fail[Created](fmt.Errorf("create sandbox: %w", err))
	}
	out := Created{Sandbox: sandbox(v)}
	msg := fmt.Sprintf("sandbox %s is running (image %s, %d CPUs, %s memory).", v.Name, v.Image, v.CPUs, size(int64(v.MemoryMB)<<20))
	if v.Work != nil {
		out.SeededFrom = v.Work.Source
		msg += fmt.Sprintf(" /work holds %s (%d entries, %s)", v.Work.Source, v.Work.Files, size(v.Work.Bytes))
		if v.Work.Base != "" {
			msg += fmt.Sprintf(" at %.12s", v.Work.Base)
		}
		msg += "; sandbox_exec runs there by default."
	} else {
		msg += " It has no /work; commands run in /root by default."
	}
	return text("%s\n\n%s", msg, jsonText(out)), out, nil
}

// ExecArgs are sandbox_exec's arguments.
type ExecArgs struct {
	VMArgs
	Command        string            `json:"command" jsonschema:"the shell command line, run with /bin/sh -c as root"`
	Workdir        string            `json:"workdir,omitempty" jsonschema:"directory to run in (default /work, or /root without one); relative to /work"`
	Env            map[string]string `json:"env,omitempty" jsonschema:"environment variables to set for the command"`
	TimeoutSeconds int               `json:"timeout_seconds,omitempty" jsonschema:"stop the command after this many seconds (default 600, at most 7200)"`
	MaxOutputBytes int               `json:"max_output_bytes,omitempty" jsonschema:"bound on each of stdout and stderr returned (default 32768, at most 1048576)"`
}

// ExecResult is what sandbox_exec returns.
type ExecResult struct {
	ExitCode        int    `json:"exit_code" jsonschema:"the command's exit code; 128+N when signal N ended it"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated int64  `json:"stdout_truncated_bytes,omitempty" jsonschema:"bytes of stdout left out"`
	StderrTruncated int64  `json:"stderr_truncated_bytes,omitempty" jsonschema:"bytes of stderr left out"`
	TimedOut        bool   `json:"timed_out,omitempty" jsonschema:"the command was stopped after timeout_seconds"`
	DurationMS      int64  `json:"duration_ms"`
}

func (s *Server) exec(ctx context.Context, req *mcp.CallToolRequest, in ExecArgs) (*mcp.CallToolResult, ExecResult, error) {
	if strings.TrimSpace(in.Command) == "" {
		return fail[ExecResult](fmt.Errorf("command is empty: give a shell command line, such as \"make test\": %w", errdefs.ErrInvalid))
	}
	timeout := defaultExec
	switch {
	case in.TimeoutSeconds < 0:
		return fail[ExecResult](fmt.Errorf("timeout_seconds %d is negative: %w", in.TimeoutSeconds, errdefs.ErrInvalid))
	case in.TimeoutSeconds > 0:
		timeout = min(time.Duration(in.TimeoutSeconds)*time.Second, maxExec)
	}
	limit, err := bound("max_output_bytes", in.MaxOutputBytes, defaultOutput, maxOutput)
	if err != nil {
		return fail[ExecResult](err)
	}
	for k := range in.Env {
		if !guestproto.EnvName(k) {
			return fail[ExecResult](fmt.Errorf("env: %q is not a variable name (letters, digits and '_', not starting with a digit): %w", k, errdefs.ErrInvalid))
		}
	}
	v, err := s.running(ctx, in.VM)
	if err != nil {
		return fail[ExecResult](err)
	}
	dir := in.Workdir
	if dir == "" && v.Work == nil {
		dir = "/root"
	}
	if dir, err = guestPath(dir); err != nil {
		return fail[ExecResult](fmt.Errorf("workdir: %w", err))
	}
	stdout, stderr := newCapture(limit), newCapture(limit)
	ectx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	stopProgress := s.execProgress(ctx, req, start, stdout, stderr)
	code := 0
	err = s.withConn(ctx, v, func(c *ssh.Client) error {
		var err error
		code, err = guestssh.Run(ectx, c, "cd "+shellQuote(dir)+" && "+in.Command, guestssh.IO{
			Stdout: stdout, Stderr: stderr, Env: in.Env, KillAfter: s.o.KillAfter,
		})
		if err != nil && code == -1 {
			// Not started: the session could not be opened.
			return fmt.Errorf("%w: %w", errStale, err)
		}
		return err
	})
	stopProgress()
	ev := api.ActivityEvent{Time: start, Kind: api.ActCommand, Action: "exec", Via: api.ViaMCP, Argv: []string{"sh", "-c", in.Command}, Dir: dir,
		DurationMS: time.Since(start).Milliseconds(), OutputBytes: stdout.Total() + stderr.Total()}
	if err == nil {
		ev.Exit = &code
	} else {
		ev.Detail = err.Error()
	}
	s.record(ctx, v.Name, ev)
	if err != nil {
		return fail[ExecResult](fmt.Errorf("exec in sandbox %s: %w", v.Name, err))
	}
	if ctx.Err() != nil {
		return fail[ExecResult](fmt.Errorf("exec in sandbox %s: the call was canceled; the command was stopped: %w", v.Name, ctx.Err()))
	}
	out := ExecResult{ExitCode: code, DurationMS: time.Since(start).Milliseconds(), TimedOut: ectx.Err() != nil}
	out.Stdout, out.StdoutTruncated = stdout.String()
	out.Stderr, out.StderrTruncated = stderr.String()
	var b strings.Builder
	fmt.Fprintf(&b, "exit code %d", code)
	if out.TimedOut {
		fmt.Fprintf(&b, " (stopped: still running after %s)", timeout)
	}
	fmt.Fprintf(&b, ", %s\n", time.Duration(out.DurationMS)*time.Millisecond)
	section(&b, "stdout", out.Stdout)
	section(&b, "stderr", out.Stderr)
	return text("%s", b.String()), out, nil
}

func section(b *strings.Builder, name, s string) {
	if s == "" {
		return
	}
	fmt.Fprintf(b, "--- %s ---\n%s", name, s)
	if !strings.HasSuffix(s, "\n") {
		b.WriteString("\n")
	}
}

// execProgress reports a running command every ProgressEvery: how long
// it has run, how much it printed, its last line.
func (s *Server) execProgress(ctx context.Context, req *mcp.CallToolRequest, start time.Time, stdout, stderr *capture) func() {
	token := req.Params.GetProgressToken()
	if token == nil || req.Session == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(s.o.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				el := time.Since(start)
				msg := fmt.Sprintf("running for %s, %s of output", el.Round(time.Second), size(stdout.Total()+stderr.Total()))
				if l := stdout.LastLine(); l != "" {
					msg += ": " + strings.ToValidUTF8(l, "?")
				}
				req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: el.Seconds(), Message: msg})
			}
		}
	}()
	return func() { close(done) }
}

func bound(name string, n, def, most int) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("%s %d is negative: %w", name, n, errdefs.ErrInvalid)
	case n == 0:
		return def, nil
	}
	return min(n, most), nil
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// guestPath makes p absolute in the guest: relative to /work.
func guestPath(p string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %q holds a NUL byte: %w", p, errdefs.ErrInvalid)
	}
	if p == "" {
		return workDir, nil
	}
	if !path.IsAbs(p) {
		p = path.Join(workDir, p)
	}
	return path.Clean(p), nil
}

// fileError says what went wrong with a guest path in words an agent
// can act on.
func fileError(verb, p string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s: no such file or directory (sandbox_list_files shows what is there): %w", verb, p, errdefs.ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s %s: permission denied: %w", verb, p, errdefs.ErrInvalid)
	}
	return fmt.Errorf("%s %s: %w", verb, p, err)
}

// ReadArgs are sandbox_read_file's arguments.
type ReadArgs struct {
	VMArgs
	Path     string `json:"path" jsonschema:"the file; relative to /work"`
	Offset   int64  `json:"offset,omitempty" jsonschema:"byte offset to start at (default 0)"`
	MaxBytes int    `json:"max_bytes,omitempty" jsonschema:"at most this many bytes (default 65536, at most 1048576)"`
}

// FileContent is what sandbox_read_file returns.
type FileContent struct {
	Path      string `json:"path"`
	Size      int64  `json:"size" jsonschema:"the file's whole size"`
	Offset    int64  `json:"offset"`
	Content   string `json:"content"`
	Encoding  string `json:"encoding,omitempty" jsonschema:"base64 when the content is not UTF-8 text"`
	Remaining int64  `json:"remaining" jsonschema:"bytes after what was returned; read on from offset+returned"`
}

func (s *Server) readFile(ctx context.Context, _ *mcp.CallToolRequest, in ReadArgs) (*mcp.CallToolResult, FileContent, error) {
	limit, err := bound("max_bytes", in.MaxBytes, defaultRead, maxRead)
	if err != nil {
		return fail[FileContent](err)
	}
	if in.Path == "" {
		return fail[FileContent](fmt.Errorf("path is empty: %w", errdefs.ErrInvalid))
	}
	if in.Offset < 0 {
		return fail[FileContent](fmt.Errorf("offset %d is negative: %w", in.Offset, errdefs.ErrInvalid))
	}
	p, err := guestPath(in.Path)
	if err != nil {
		return fail[FileContent](err)
	}
	v, err := s.running(ctx, in.VM)
	if err != nil {
		return fail[FileContent](err)
	}
	var out FileContent
	err = s.withSFTP(ctx, v, func(sc *sftp.Client) error {
		f, err := sc.Open(p)
		if err != nil {
			return fileError("read", p, err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return fileError("read", p, err)
		}
		if st.IsDir() {
			return fmt.Errorf("read %s: it is a directory: list it with sandbox_list_files: %w", p, errdefs.ErrInvalid)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("read %s: not a regular file (%s): %w", p, st.Mode().Type(), errdefs.ErrInvalid)
		}
		if _, err := f.Seek(in.Offset, io.SeekStart); err != nil {
			return fileError("read", p, err)
		}
		b, err := io.ReadAll(io.LimitReader(f, int64(limit)))
		if err != nil {
			return fileError("read", p, err)
		}
		out = FileContent{Path: p, Size: st.Size(), Offset: in.Offset, Remaining: max(st.Size()-in.Offset-int64(len(b)), 0)}
		if utf8.Valid(b) || (len(b) == limit && utf8.Valid(trimPartialRune(b))) {
			out.Content = string(b)
		} else {
			out.Content, out.Encoding = base64.StdEncoding.EncodeToString(b), "base64"
		}
		return nil
	})
	if err != nil {
		return fail[FileContent](err)
	}
	if out.Encoding == "" && !bytes.ContainsRune([]byte(out.Content), 0) {
		note := ""
		if out.Remaining > 0 {
			note = fmt.Sprintf("\n[... %d bytes more: read on with offset %d ...]", out.Remaining, out.Offset+int64(len(out.Content)))
		}
		return text("%s%s", out.Content, note), out, nil
	}
	return text("%s", jsonText(out)), out, nil
}

// trimPartialRune drops an incomplete character at the end of b, cut by a
// read limit.
func trimPartialRune(b []byte) []byte {
	for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			break
		}
	}
	return b
}

// WriteArgs are sandbox_write_file's arguments.
type WriteArgs struct {
	VMArgs
	Path    string `json:"path" jsonschema:"the file; relative to /work; parent directories are made"`
	Content string `json:"content" jsonschema:"the file's content"`
	Base64  bool   `json:"base64,omitempty" jsonschema:"content is base64-encoded (for binary files)"`
	Mode    string `json:"mode,omitempty" jsonschema:"permissions in octal, such as 0755 for a script (default 0644, or the existing file's)"`
	Append  bool   `json:"append,omitempty" jsonschema:"add to the end of the file instead of replacing it"`
}

// Written is what sandbox_write_file returns.
type Written struct {
	Path  string `json:"path"`
	Bytes int    `json:"bytes" jsonschema:"bytes written"`
	Size  int64  `json:"size" jsonschema:"the file's size now"`
}

func (s *Server) writeFile(ctx context.Context, _ *mcp.CallToolRequest, in WriteArgs) (*mcp.CallToolResult, Written, error) {
	if in.Path == "" {
		return fail[Written](fmt.Errorf("path is empty: %w", errdefs.ErrInvalid))
	}
	p, err := guestPath(in.Path)
	if err != nil {
		return fail[Written](err)
	}
	if p == "/" || strings.HasSuffix(in.Path, "/") {
		return fail[Written](fmt.Errorf("path %s names a directory, not a file: %w", in.Path, errdefs.ErrInvalid))
	}
	data := []byte(in.Content)
	if in.Base64 {
		if data, err = base64.StdEncoding.DecodeString(in.Content); err != nil {
			return fail[Written](fmt.Errorf("content is not valid base64: %w: %w", err, errdefs.ErrInvalid))
		}
	}
	if len(data) > maxWrite {
		return fail[Written](fmt.Errorf("content is %s; at most %s per call: append in parts, or fetch it inside the sandbox: %w", size(int64(len(data))), size(maxWrite), errdefs.ErrInvalid))
	}
	var mode os.FileMode
	if in.Mode != "" {
		m, err := strconv.ParseUint(in.Mode, 8, 32)
		if err != nil || m > 0o7777 {
			return fail[Written](fmt.Errorf("mode %q: give octal permissions such as 0644 or 0755: %w", in.Mode, errdefs.ErrInvalid))
		}
		mode = os.FileMode(m)
	}
	v, err := s.running(ctx, in.VM)
	if err != nil {
		return fail[Written](err)
	}
	var out Written
	err = s.withSFTP(ctx, v, func(sc *sftp.Client) error {
		if st, err := sc.Stat(p); err == nil && st.IsDir() {
			return fmt.Errorf("write %s: it is a directory: %w", p, errdefs.ErrInvalid)
		}
		if err := sc.MkdirAll(path.Dir(p)); err != nil {
			return fileError("make the directory for", p, err)
		}
		flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if in.Append {
			flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		}
		f, err := sc.OpenFile(p, flags)
		if err != nil {
			return fileError("write", p, err)
		}
		if in.Append {
			// SFTP writes at offsets: O_APPEND alone starts at 0.
			if _, err := f.Seek(0, io.SeekEnd); err != nil {
				f.Close()
				return fileError("append to", p, err)
			}
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return fileError("write", p, err)
		}
		if err := f.Close(); err != nil {
			return fileError("write", p, err)
		}
		if mode != 0 {
			if err := sc.Chmod(p, mode); err != nil {
				return fileError("chmod", p, err)
			}
		}
		st, err := sc.Stat(p)
		if err != nil {
			return fileError("write", p, err)
		}
		out = Written{Path: p, Bytes: len(data), Size: st.Size()}
		return nil
	})
	if err != nil {
		return fail[Written](err)
	}
	s.record(ctx, v.Name, api.ActivityEvent{Time: time.Now(), Kind: api.ActFile, Action: "write", Via: api.ViaMCP, Path: out.Path, Bytes: int64(out.Bytes), Detail: "sandbox_write_file"})
	return text("wrote %d bytes to %s (now %d bytes)", out.Bytes, out.Path, out.Size), out, nil
}

// record adds what a tool did in a sandbox to its activity record; a
// failure is the server's log's, not the tool's.
func (s *Server) record(ctx context.Context, vm string, ev api.ActivityEvent) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := s.d.Record(cctx, vm, ev); err != nil && s.o.Log != nil {
		fmt.Fprintf(s.o.Log, "banger mcp: add to sandbox %s's activity record: %v\n", vm, err)
	}
}

// ReportArgs are sandbox_report's arguments.
type ReportArgs struct {
	VMArgs
	Changes bool   `json:"changes,omitempty" jsonschema:"also list what differs on the sandbox's root disk from its image, outside /work (the sandbox must be stopped)"`
	Since   string `json:"since,omitempty" jsonschema:"only what happened since: a duration back from now (30m, 2h) or an RFC 3339 time"`
}

// Report is what sandbox_report returns.
type Report struct {
	api.ActivityReport
	Changes *api.RootChanges `json:"changes,omitempty" jsonschema:"the root disk's changes, with changes"`
}

func (s *Server) report(ctx context.Context, _ *mcp.CallToolRequest, in ReportArgs) (*mcp.CallToolResult, Report, error) {
	v, err := s.vm(ctx, in.VM)
	if err != nil {
		return fail[Report](err)
	}
	rep, err := s.d.Report(ctx, v.Name, in.Since)
	if err != nil {
		return fail[Report](err)
	}
	out := Report{ActivityReport: rep}
	var b strings.Builder
	report.Summary(&b, rep)
	if in.Changes {
		c, err := s.d.RootChanges(ctx, v.Name)
		if err != nil {
			return fail[Report](err)
		}
		out.Changes = &c
		report.Changes(&b, c)
	}
	b.WriteString("\n")
	report.Timeline(&b, rep, time.UTC)
	return text("%s", b.String()), out, nil
}

// ListArgs are sandbox_list_files' arguments.
type ListArgs struct {
	VMArgs
	Path       string `json:"path,omitempty" jsonschema:"the directory (default /work); relative to /work"`
	Recursive  bool   `json:"recursive,omitempty" jsonschema:"list the whole tree below path; .git directories are listed, not entered"`
	MaxEntries int    `json:"max_entries,omitempty" jsonschema:"at most this many entries (default 500, at most 5000)"`
}

// Entry is one file in a listing.
type Entry struct {
	Path string `json:"path"`
	Type string `json:"type" jsonschema:"file, dir, symlink or other"`
	Size int64  `json:"size"`
	Mode string `json:"mode" jsonschema:"permissions in octal"`
}

// Listing is what sandbox_list_files returns.
type Listing struct {
	Path    string  `json:"path"`
	Entries []Entry `json:"entries"`
	More    int     `json:"more,omitempty" jsonschema:"entries left out beyond max_entries"`
}

func (s *Server) listFiles(ctx context.Context, _ *mcp.CallToolRequest, in ListArgs) (*mcp.CallToolResult, Listing, error) {
	limit, err := bound("max_entries", in.MaxEntries, defaultList, maxList)
	if err != nil {
		return fail[Listing](err)
	}
	p, err := guestPath(in.Path)
	if err != nil {
		return fail[Listing](err)
	}
	v, err := s.running(ctx, in.VM)
	if err != nil {
		return fail[Listing](err)
	}
	out := Listing{Path: p, Entries: []Entry{}}
	err = s.withSFTP(ctx, v, func(sc *sftp.Client) error {
		st, err := sc.Stat(p)
		if err != nil {
			return fileError("list", p, err)
		}
		if !st.IsDir() {
			out.Entries = append(out.Entries, entry(p, st))
			return nil
		}
		queue := []string{p}
		for len(queue) > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			dir := queue[0]
			queue = queue[1:]
			fis, err := sc.ReadDir(dir)
			if err != nil {
				if dir == p {
					return fileError("list", p, err)
				}
				continue // a subdirectory we cannot read is left out
			}
			sort.Slice(fis, func(i, j int) bool { return fis[i].Name() < fis[j].Name() })
			for _, fi := range fis {
				full := path.Join(dir, fi.Name())
				if len(out.Entries) < limit {
					out.Entries = append(out.Entries, entry(full, fi))
				} else {
					out.More++
				}
				if in.Recursive && fi.IsDir() && fi.Name() != ".git" {
					queue = append(queue, full)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fail[Listing](err)
	}
	var b strings.Builder
	for _, e := range out.Entries {
		rel := strings.TrimPrefix(strings.TrimPrefix(e.Path, p), "/")
		if rel == "" {
			rel = e.Path
		}
		if e.Type == "dir" {
			rel += "/"
		}
		fmt.Fprintf(&b, "%-6s %s %10d  %s\n", e.Type, e.Mode, e.Size, rel)
	}
	if out.More > 0 {
		fmt.Fprintf(&b, "[... %d more entries: raise max_entries or list a subdirectory ...]\n", out.More)
	}
	if len(out.Entries) == 0 {
		fmt.Fprintf(&b, "%s is empty\n", p)
	}
	return text("%s", b.String()), out, nil
}

func entry(p string, fi os.FileInfo) Entry {
	t := "other"
	switch {
	case fi.Mode().IsRegular():
		t = "file"
	case fi.IsDir():
		t = "dir"
	case fi.Mode()&os.ModeSymlink != 0:
		t = "symlink"
	}
	return Entry{Path: p, Type: t, Size: fi.Size(), Mode: fmt.Sprintf("%04o", fi.Mode().Perm())}
}

// VMArgs name one sandbox.
type VMArgs struct {
	VM string `json:"vm,omitempty" jsonschema:"the sandbox's name, as sandbox_create returned it; may be left out when you have exactly one"`
}

// DiffArgs are sandbox_diff's arguments.
type DiffArgs struct {
	VMArgs
	StatOnly bool `json:"stat_only,omitempty" jsonschema:"only which files changed and how much, no patch"`
	// SinceSeed is vm diff --since-seed.
	SinceSeed bool `json:"since_seed,omitempty" jsonschema:"only what changed in the sandbox since it was seeded, committed or not, as one diff: the human's own uncommitted work, seeded with it, left out"`
	MaxBytes  int  `json:"max_bytes,omitempty" jsonschema:"bound on the text returned (default 65536, at most 1048576)"`
}

// Diff is what sandbox_diff returns.
type Diff struct {
	Diff      string `json:"diff"`
	Truncated int64  `json:"truncated_bytes,omitempty"`
}

func (s *Server) diff(ctx context.Context, _ *mcp.CallToolRequest, in DiffArgs) (*mcp.CallToolResult, Diff, error) {
	limit, err := bound("max_bytes", in.MaxBytes, defaultRead, maxRead)
	if err != nil {
		return fail[Diff](err)
	}
	v, err := s.vm(ctx, in.VM)
	if err != nil {
		return fail[Diff](err)
	}
	if v.Work == nil {
		return fail[Diff](fmt.Errorf("sandbox %s has no /work: it was not seeded from a checkout, so there is no work to diff: %w", v.Name, errdefs.ErrInvalid))
	}
	c := newCapture(limit)
	if err := s.d.Diff(ctx, v.Name, in.StatOnly, in.SinceSeed, c); err != nil {
		return fail[Diff](err)
	}
	var out Diff
	out.Diff, out.Truncated = c.String()
	if c.Total() == 0 {
		out.Diff = fmt.Sprintf("no changes in sandbox %s since it was seeded\n", v.Name)
	}
	return text("%s", out.Diff), out, nil
}

// PullArgs are sandbox_pull's arguments.
type PullArgs struct {
	VMArgs
	Branch string `json:"branch,omitempty" jsonschema:"the branch to write in the host repository: banger/NAME by default, and always under banger/"`
	Force  bool   `json:"force,omitempty" jsonschema:"replace the branch if it exists (only ever a branch under banger/)"`
}

// pullPrefix is where an agent's branches go: whatever it is told, it
// never writes (nor, with force, replaces) a branch a human keeps.
const pullPrefix = "banger/"

func (s *Server) pull(ctx context.Context, _ *mcp.CallToolRequest, in PullArgs) (*mcp.CallToolResult, PullResult, error) {
	v, err := s.vm(ctx, in.VM)
	if err != nil {
		return fail[PullResult](err)
	}
	if v.Work == nil {
		return fail[PullResult](fmt.Errorf("sandbox %s has no /work: it was not seeded from a checkout, so there is nothing to pull: %w", v.Name, errdefs.ErrInvalid))
	}
	if in.Branch != "" && (!strings.HasPrefix(in.Branch, pullPrefix) || len(in.Branch) == len(pullPrefix)) {
		return fail[PullResult](fmt.Errorf("branch %q: sandbox_pull writes only branches under %s (banger/%s when none is given), never one a human keeps: %w", in.Branch, pullPrefix, v.Name, errdefs.ErrInvalid))
	}
	var b bytes.Buffer
	res, err := s.d.Pull(ctx, v.Name, in.Branch, in.Force, &b)
	if err != nil {
		return fail[PullResult](err)
	}
	return text("%s\nA human can review it with `git log -p %s` and merge it; the host checkout was not touched.", strings.TrimSpace(b.String()), res.Branch), res, nil
}

func (s *Server) start(ctx context.Context, req *mcp.CallToolRequest, in VMArgs) (*mcp.CallToolResult, Sandbox, error) {
	v, err := s.vm(ctx, in.VM)
	if err != nil {
		return fail[Sandbox](err)
	}
	if v, err = s.d.Start(ctx, v.Name, progress(ctx, req)); err != nil {
		return fail[Sandbox](err)
	}
	return text("sandbox %s is running", v.Name), sandbox(v), nil
}

func (s *Server) stop(ctx context.Context, req *mcp.CallToolRequest, in VMArgs) (*mcp.CallToolResult, Sandbox, error) {
	v, err := s.vm(ctx, in.VM)
	if err != nil {
		return fail[Sandbox](err)
	}
	if v, err = s.d.Stop(ctx, v.Name, progress(ctx, req)); err != nil {
		return fail[Sandbox](err)
	}
	return text("sandbox %s is stopped; its disks keep every change (sandbox_start boots it again)", v.Name), sandbox(v), nil
}

// RemoveArgs are sandbox_remove's arguments.
type RemoveArgs struct {
	VMArgs
	Force bool `json:"force,omitempty" jsonschema:"remove it even if its work was never pulled (the work is lost)"`
}

// Removed is what sandbox_remove returns.
type Removed struct {
	Name string `json:"name"`
}

func (s *Server) remove(ctx context.Context, _ *mcp.CallToolRequest, in RemoveArgs) (*mcp.CallToolResult, Removed, error) {
	v, err := s.vm(ctx, in.VM)
	if err != nil {
		return fail[Removed](err)
	}
	if v.Work != nil && v.Work.PulledAt.IsZero() && !in.Force {
		return fail[Removed](fmt.Errorf("sandbox %s has work in /work that was never pulled: hand it over with sandbox_pull first, or pass force to drop it: %w", v.Name, errdefs.ErrConflict))
	}
	// Running or not: an agent's remove means it is done with it.
	if err := s.d.Remove(ctx, v.Name, true); err != nil {
		return fail[Removed](err)
	}
	s.conns.forget(v.Name)
	return text("removed sandbox %s and its disks", v.Name), Removed{Name: v.Name}, nil
}

// Sandboxes is what sandbox_list returns.
type Sandboxes struct {
	Sandboxes []Sandbox `json:"sandboxes"`
}

func (s *Server) listVMs(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, Sandboxes, error) {
	vs, err := s.list(ctx)
	if err != nil {
		return fail[Sandboxes](err)
	}
	out := Sandboxes{Sandboxes: []Sandbox{}}
	var b strings.Builder
	for _, v := range vs {
		sb := sandbox(v)
		out.Sandboxes = append(out.Sandboxes, sb)
		fmt.Fprintf(&b, "%s: %s, image %s, %d CPUs, %s memory", sb.Name, sb.State, sb.Image, sb.CPUs, size(int64(sb.MemoryMiB)<<20))
		if sb.Work != "" {
			fmt.Fprintf(&b, ", work %s", sb.Work)
		}
		if s.o.All && sb.MadeBy != "" {
			fmt.Fprintf(&b, ", made by %s", sb.MadeBy)
		}
		b.WriteString("\n")
	}
	if len(vs) == 0 {
		b.WriteString("no sandboxes yet: sandbox_create makes one\n")
	}
	return text("%s", b.String()), out, nil
}

// LogsArgs are sandbox_logs' arguments.
type LogsArgs struct {
	VMArgs
	Lines int `json:"lines,omitempty" jsonschema:"how many of the last lines (default 100, at most 5000)"`
}

// Logs is what sandbox_logs returns.
type Logs struct {
	Console string `json:"console"`
	More    int    `json:"more_lines,omitempty" jsonschema:"earlier lines left out"`
}

func (s *Server) logs(ctx context.Context, _ *mcp.CallToolRequest, in LogsArgs) (*mcp.CallToolResult, Logs, error) {
	n, err := bound("lines", in.Lines, defaultLines, maxLines)
	if err != nil {
		return fail[Logs](err)
	}
	v, err := s.vm(ctx, in.VM)
	if err != nil {
		return fail[Logs](err)
	}
	t := &tailLines{n: n}
	if err := s.d.Logs(ctx, v.Name, t); err != nil {
		return fail[Logs](err)
	}
	out := Logs{Console: strings.ToValidUTF8(t.String(), "?"), More: t.dropped}
	note := ""
	if t.dropped > 0 {
		note = fmt.Sprintf("[... %d earlier lines ...]\n", t.dropped)
	}
	return text("%s%s", note, out.Console), out, nil
}

// tailLines keeps the last n lines written to it, each cut to 4 KiB.
type tailLines struct {
	n       int
	lines   []string
	partial []byte
	dropped int
}

func (t *tailLines) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.partial = appendCapped(t.partial, p)
			break
		}
		t.partial = appendCapped(t.partial, p[:i])
		t.push(string(t.partial))
		t.partial = t.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func appendCapped(b, p []byte) []byte {
	const most = 4 << 10
	if room := most - len(b); room > 0 {
		b = append(b, p[:min(room, len(p))]...)
	}
	return b
}

func (t *tailLines) push(l string) {
	t.lines = append(t.lines, l)
	if len(t.lines) > t.n {
		t.lines = t.lines[1:]
		t.dropped++
	}
}

func (t *tailLines) String() string {
	if len(t.partial) > 0 {
		t.push(string(t.partial))
		t.partial = nil
	}
	if len(t.lines) == 0 {
		return ""
	}
	return strings.Join(t.lines, "\n") + "\n"
}
