//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
)

// inspectorVersion is the MCP Inspector the test drives banger mcp with:
// a client nobody here wrote.
const inspectorVersion = "0.15.0"

// mcpInspector returns the MCP Inspector's command: $BANGER_E2E_MCP_INSPECTOR
// (.ci/run installs it), else installed from npm into the test's
// directory.
func mcpInspector(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BANGER_E2E_MCP_INSPECTOR"); p != "" {
		return p
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatal("needs npm to install the MCP Inspector (apt-get install npm), or BANGER_E2E_MCP_INSPECTOR; .ci/run provides it")
	}
	dir := t.TempDir()
	cmd := exec.Command("npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "@modelcontextprotocol/inspector@"+inspectorVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install the MCP Inspector: %v\n%s", err, out)
	}
	return filepath.Join(dir, "node_modules", ".bin", "mcp-inspector")
}

// inspector runs `mcp-inspector --cli banger mcp ...` in dir, as a user
// following the README would, and decodes its JSON output.
type inspector struct {
	t   *testing.T
	bin string
	e   *env
	dir string
	// server is the MCP server's command, when not `banger mcp`.
	server string
}

func (in *inspector) run(out any, args ...string) string {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	argv := append([]string{"--cli", bangerBin, "mcp"}, args...)
	if in.server != "" {
		argv = append([]string{"--cli", in.server}, args...)
	}
	cmd := in.e.command(ctx, in.bin, argv...)
	cmd.Dir = in.dir
	cmd.Env = in.e.cliEnv()
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	if err := cmd.Run(); err != nil {
		in.t.Fatalf("mcp-inspector %v: %v\n%s\n%s", args, err, o.String(), er.String())
	}
	if out != nil {
		if err := json.Unmarshal(o.Bytes(), out); err != nil {
			in.t.Fatalf("mcp-inspector %v printed no JSON: %v\n%s\n%s", args, err, o.String(), er.String())
		}
	}
	return o.String()
}

// toolResult is a tools/call result as the Inspector prints it.
type toolResult struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	Structured json.RawMessage `json:"structuredContent"`
	IsError    bool            `json:"isError"`
}

func (r toolResult) text() string {
	var b strings.Builder
	for _, c := range r.Content {
		b.WriteString(c.Text)
	}
	return b.String()
}

// call calls a tool with key=value arguments and decodes its structured
// result into out; a tool error fails the test unless wantErr.
func (in *inspector) call(out any, wantErr bool, tool string, kv ...string) toolResult {
	in.t.Helper()
	args := []string{"--method", "tools/call", "--tool-name", tool}
	if len(kv) > 0 {
		args = append(append(args, "--tool-arg"), kv...)
	}
	var r toolResult
	in.run(&r, args...)
	if r.IsError != wantErr {
		in.t.Fatalf("%s %v: isError %v, want %v: %s", tool, kv, r.IsError, wantErr, r.text())
	}
	if out != nil && !r.IsError {
		if err := json.Unmarshal(r.Structured, out); err != nil {
			in.t.Fatalf("%s: structured result %s: %v", tool, r.Structured, err)
		}
	}
	return r
}

// TestMCP drives `banger mcp` with the MCP Inspector's command line, in
// a checkout with uncommitted work, under TCG: an agent's whole loop from
// a new sandbox to its work as a branch on the host.
func TestMCP(t *testing.T) {
	t.Parallel()
	bin := mcpInspector(t)
	e := gitImageEnv(t, "default_disk = \"256M\"\n")
	repo := filepath.Join(e.dir, "repo")
	gitRepo(t, repo)
	e.cwd = repo
	in := &inspector{t: t, bin: bin, e: e, dir: repo}
	hostStatus := hostGit(t, repo, "status", "--short")
	hostV2 := hostGit(t, repo, "status", "--porcelain=v2")

	var list struct {
		Tools []struct {
			Name         string          `json:"name"`
			Description  string          `json:"description"`
			InputSchema  json.RawMessage `json:"inputSchema"`
			OutputSchema json.RawMessage `json:"outputSchema"`
		} `json:"tools"`
	}
	in.run(&list, "--method", "tools/list")
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
		if !strings.Contains(string(tl.InputSchema), `"type":"object"`) && !strings.Contains(string(tl.InputSchema), `"type": "object"`) {
			t.Errorf("%s: input schema %s", tl.Name, tl.InputSchema)
		}
		if len(tl.OutputSchema) == 0 || tl.Description == "" {
			t.Errorf("%s: no output schema or description", tl.Name)
		}
	}
	slices.Sort(names)
	want := []string{"sandbox_create", "sandbox_diff", "sandbox_exec", "sandbox_list", "sandbox_list_files", "sandbox_logs",
		"sandbox_pull", "sandbox_read_file", "sandbox_remove", "sandbox_report", "sandbox_start", "sandbox_stop", "sandbox_write_file"}
	if !slices.Equal(names, want) {
		t.Fatalf("tools/list: %v, want %v", names, want)
	}

	var created struct {
		Name       string `json:"name"`
		State      string `json:"state"`
		Workdir    string `json:"workdir"`
		SeededFrom string `json:"seeded_from"`
	}
	r := in.call(&created, false, "sandbox_create", "image=git", "work_disk=96M")
	if created.State != api.VMRunning || created.Workdir != "/work" || created.SeededFrom != repo {
		t.Fatalf("sandbox_create: %+v\n%s", created, r.text())
	}
	vm := created.Name
	t.Logf("sandbox %s: %s", vm, r.text())

	type execResult struct {
		ExitCode        int    `json:"exit_code"`
		Stdout          string `json:"stdout"`
		Stderr          string `json:"stderr"`
		StdoutTruncated int64  `json:"stdout_truncated_bytes"`
	}
	var x execResult
	// Each call is a new banger mcp process: the sandbox is found again
	// by its checkout, with no name given.
	in.call(&x, false, "sandbox_exec", "command=git status --short")
	if x.ExitCode != 0 || x.Stdout != hostStatus {
		t.Fatalf("git status in the sandbox:\n%+v\non the host:\n%s", x, hostStatus)
	}

	in.call(nil, false, "sandbox_write_file", "vm="+vm, "path=FIX.txt", "content=fixed by the agent\n")
	in.call(&x, false, "sandbox_exec", "vm="+vm, "command=git add FIX.txt && git -c user.name=Agent -c user.email=agent@example.com commit -qm 'agent: add FIX.txt' && git log --oneline -1")
	if x.ExitCode != 0 || !strings.Contains(x.Stdout, "agent: add FIX.txt") {
		t.Fatalf("commit in the sandbox: %+v", x)
	}
	var fc struct {
		Content string `json:"content"`
	}
	in.call(&fc, false, "sandbox_read_file", "path=/work/FIX.txt")
	if fc.Content != "fixed by the agent\n" {
		t.Errorf("sandbox_read_file: %q", fc.Content)
	}
	var ls struct {
		Entries []struct {
			Path string `json:"path"`
		} `json:"entries"`
	}
	in.call(&ls, false, "sandbox_list_files")
	if !slices.ContainsFunc(ls.Entries, func(e struct {
		Path string `json:"path"`
	}) bool {
		return e.Path == "/work/FIX.txt"
	}) {
		t.Errorf("sandbox_list_files /work: %+v", ls.Entries)
	}

	// A bounded stream: 50 MiB of stdout comes back as its two ends.
	in.call(&x, false, "sandbox_exec", "command=head -c 52428800 /dev/zero | tr '\\0' x; echo; echo the-end")
	if x.StdoutTruncated < 50<<20-64<<10 || len(x.Stdout) > 40<<10 || !strings.Contains(x.Stdout, "bytes more ...]") || !strings.HasSuffix(x.Stdout, "the-end\n") {
		t.Errorf("50 MiB of stdout: %d bytes back, %d left out", len(x.Stdout), x.StdoutTruncated)
	}

	r = in.call(nil, false, "sandbox_diff")
	if d := r.text(); !strings.Contains(d, "agent: add FIX.txt") || !strings.Contains(d, "FIX.txt") || !strings.Contains(d, "# uncommitted changes") {
		t.Errorf("sandbox_diff:\n%s", d)
	}
	if out := e.mustBanger("vm", "diff", vm, "--stat"); !strings.Contains(out, "FIX.txt") {
		t.Errorf("the human's vm diff:\n%s", out)
	}

	// The human's side: vm ls shows the agent made it.
	var vms []api.VM
	json.Unmarshal([]byte(e.mustBanger("vm", "ls", "-o", "json")), &vms)
	if len(vms) != 1 || vms[0].MadeBy == nil || vms[0].MadeBy.Tool != "mcp" || vms[0].MadeBy.Checkout != repo {
		t.Fatalf("vm ls -o json: %+v", vms)
	}
	if out := e.mustBanger("vm", "ls"); !strings.Contains(out, "BY") || !strings.Contains(out, " mcp ") {
		t.Errorf("vm ls:\n%s", out)
	}
	if out := e.mustBanger("vm", "show", vm); !strings.Contains(out, "Made by:  banger mcp, for "+repo) {
		t.Errorf("vm show:\n%s", out)
	}

	// Out of scope: a VM made by hand is neither listed nor reachable.
	e.mustBanger("vm", "create", "--name", "by-hand", "--image", "git", "--no-workdir")
	var sbs struct {
		Sandboxes []struct {
			Name string `json:"name"`
		} `json:"sandboxes"`
	}
	in.call(&sbs, false, "sandbox_list")
	if len(sbs.Sandboxes) != 1 || sbs.Sandboxes[0].Name != vm {
		t.Errorf("sandbox_list: %+v, want only %s", sbs, vm)
	}
	r = in.call(nil, true, "sandbox_remove", "vm=by-hand", "force=true")
	if !strings.Contains(r.text(), "was not made by banger mcp for "+repo) {
		t.Errorf("remove out of scope: %s", r.text())
	}
	e.mustBanger("vm", "show", "by-hand")
	r = in.call(nil, true, "sandbox_exec", "vm=nope", "command=true")
	if !strings.Contains(r.text(), `no sandbox named "nope"`) {
		t.Errorf("no such sandbox: %s", r.text())
	}
	e.mustBanger("vm", "rm", "by-hand")

	r = in.call(nil, true, "sandbox_remove")
	if !strings.Contains(r.text(), "never pulled") {
		t.Errorf("remove of unpulled work: %s", r.text())
	}
	var pulled struct {
		Branch  string   `json:"branch"`
		Commit  string   `json:"commit"`
		Commits []string `json:"commits"`
	}
	// An agent writes only under banger/: not the human's main, force
	// or not.
	mainBefore := hostGit(t, repo, "rev-parse", "refs/heads/main")
	r = in.call(nil, true, "sandbox_pull", "branch=main", "force=true")
	if !strings.Contains(r.text(), "only branches under banger/") {
		t.Errorf("sandbox_pull to main: %s", r.text())
	}
	if got := hostGit(t, repo, "rev-parse", "refs/heads/main"); got != mainBefore {
		t.Errorf("the host's main moved: %s -> %s", mainBefore, got)
	}
	r = in.call(&pulled, false, "sandbox_pull")
	if pulled.Branch != "banger/"+vm || len(pulled.Commits) != 2 {
		t.Fatalf("sandbox_pull: %+v\n%s", pulled, r.text())
	}
	if got := hostGit(t, repo, "log", "--format=%s", "-2", pulled.Branch); !strings.Contains(got, "agent: add FIX.txt") {
		t.Errorf("branch %s on the host: %s", pulled.Branch, got)
	}
	if got := hostGit(t, repo, "show", pulled.Branch+":FIX.txt"); got != "fixed by the agent\n" {
		t.Errorf("FIX.txt on the branch: %q", got)
	}
	if got := hostGit(t, repo, "status", "--porcelain=v2"); got != hostV2 {
		t.Errorf("the host's checkout changed:\n%s\nwas:\n%s", got, hostV2)
	}

	in.call(nil, false, "sandbox_remove")
	out := e.mustBanger("vm", "ls", "-o", "json")
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("after sandbox_remove, vm ls: %s", out)
	}
	if left := dirEntries(t, filepath.Join(e.stateDir, "vms")); len(left) != 0 {
		t.Errorf("sandbox_remove left %v", left)
	}
	if _, _, code := e.banger("status"); code != 0 {
		t.Error("the daemon is not well after the run")
	}
}
