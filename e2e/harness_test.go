//go:build e2e

// Package e2e runs banger for real: the built binary, its daemon on a
// temporary state directory and socket, real kernel packages served from
// 127.0.0.1. Run with: go test -tags e2e ./e2e/
//
// Each test has its own daemon, state directory, registry and file
// server, so tests run side by side (t.Parallel; scripts/test runs three
// at a time on two cores: a guest under TCG keeps one core busy, and much
// of a test is waiting, on a boot, the package mirror, a killed VMM). Those that compare the host's own network
// before and after (TestBridgeNetwork), or probe its KVM, do not call
// t.Parallel and so run first, alone. Timing checks allow for a host that is busy with
// another test.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

var (
	bangerBin string // the binary under test
	agentBin  string // the guest agent, static
	kernelDeb string // a real linux-image .deb
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "banger-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// Tests run the CLI as an unprivileged user too.
	os.Chmod(tmp, 0o755)
	bangerBin = filepath.Join(tmp, "banger")
	build := exec.Command("go", "build", "-o", bangerBin, "../cmd/banger")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build banger: %v\n%s", err, out)
		return 1
	}
	agentBin = filepath.Join(tmp, "banger-agent")
	build = exec.Command("go", "build", "-ldflags", "-s -w", "-o", agentBin, "../cmd/banger-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build banger-agent: %v\n%s", err, out)
		return 1
	}
	kernelDeb = os.Getenv("BANGER_E2E_KERNEL_DEB")
	if kernelDeb == "" {
		kernelDeb, err = downloadKernelDeb(tmp)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e needs a kernel .deb: set BANGER_E2E_KERNEL_DEB or have apt-get: %v\n", err)
			return 1
		}
	}
	if err := prepareKernel(filepath.Join(tmp, "prepared")); err != nil {
		fmt.Fprintf(os.Stderr, "prepare the test kernel: %v\n", err)
		return 1
	}
	return m.Run()
}

// downloadKernelDeb fetches the kernel package linux-image-amd64 points
// at, through this host's own apt sources.
func downloadKernelDeb(dir string) (string, error) {
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64: %w", err)
	}
	pkg := ""
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			pkg = f[1]
			break
		}
	}
	if pkg == "" {
		return "", fmt.Errorf("no kernel package behind linux-image-amd64 (run apt-get update)")
	}
	cmd := exec.Command("apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %v: %s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %v", pkg, debs)
	}
	return debs[0], nil
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	sum, err := sha256Of(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func sha256Of(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileServer serves files on 127.0.0.1, optionally slowly or cut short.
type fileServer struct {
	URL   string
	mu    sync.Mutex
	files map[string]served
	hits  map[string]int
}

type served struct {
	path     string
	rate     int  // bytes per second; 0 is full speed
	truncate bool // announce the full length, send half, hang up
}

func newFileServer(t *testing.T) *fileServer {
	t.Helper()
	fs := &fileServer{files: map[string]served{}, hits: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(fs.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	fs.URL = "http://" + ln.Addr().String()
	return fs
}

func (fs *fileServer) add(urlPath string, s served) string {
	fs.mu.Lock()
	fs.files[urlPath] = s
	fs.mu.Unlock()
	return fs.URL + urlPath
}

func (fs *fileServer) hitCount(urlPath string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.hits[urlPath]
}

func (fs *fileServer) serve(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	s, ok := fs.files[r.URL.Path]
	fs.hits[r.URL.Path]++
	fs.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	if s.truncate {
		b = b[:len(b)/2]
	}
	if s.rate == 0 {
		w.Write(b)
		return
	}
	chunk := s.rate / 10
	for len(b) > 0 {
		n := min(chunk, len(b))
		if _, err := w.Write(b[:n]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		b = b[n:]
		select {
		case <-time.After(100 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
	}
}

// env is one daemon's world: state directory, socket, config.
type env struct {
	t        *testing.T
	dir      string
	stateDir string
	socket   string
	config   string
	daemon   *exec.Cmd
	log      *testkit.SyncBuffer
	exited   chan struct{} // closed when the daemon process has exited
	exitErr  error         // its Wait error, once exited is closed
	// cwd is where CLI commands run: the env's own directory unless a
	// test sets it (a git checkout there would be seeded into /work).
	cwd string
	// extraEnv is added to CLI commands' environment.
	extraEnv []string
	// netns, when set, is the network namespace the daemon and the CLI
	// run in (the CLI dials guests' forwarded ports on its 127.0.0.1).
	netns string
}

// noGuard keeps a test daemon's guard off the host's own firewall.
const noGuard = "guard_host = false\n"

func newEnv(t *testing.T, config string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, stateDir: filepath.Join(dir, "state"), socket: filepath.Join(dir, "banger.sock"), config: filepath.Join(dir, "config.toml")}
	// The guard writes banger's nftables table: never on the host's own
	// network, only in a namespace a test makes (netEnv turns it on).
	if err := os.WriteFile(e.config, []byte(noGuard+config), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.stop)
	return e
}

func (e *env) write(name, body string) string {
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// start runs the daemon and waits until it answers.
func (e *env) start() {
	e.t.Helper()
	e.spawn()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, code := e.banger("status"); code == 0 {
			return
		}
		select {
		case <-e.exited:
			e.daemon = nil
			e.t.Fatalf("daemon exited at start: %v\n%s", e.exitErr, e.log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	e.t.Fatalf("daemon did not answer within 20s:\n%s", e.log)
}

func (e *env) spawn() {
	cmd := e.command(context.Background(), bangerBin, "daemon", "--state-dir", e.stateDir, "--socket", e.socket, "--config", e.config)
	log := &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	exited := make(chan struct{})
	e.daemon, e.log, e.exited = cmd, log, exited
	go func() { e.exitErr = cmd.Wait(); close(exited) }()
}

// command runs bin in the env's network namespace, if it has one:
// `ip netns exec` execs it, so the process is bin itself.
func (e *env) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	if e.netns == "" {
		return exec.CommandContext(ctx, bin, args...)
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", e.netns, bin}, args...)...)
}

// kill ends the daemon with SIGKILL, as a crash would.
func (e *env) kill() {
	e.daemon.Process.Signal(syscall.SIGKILL)
	<-e.exited
	e.daemon = nil
}

// term stops the daemon with SIGTERM and returns its exit error.
func (e *env) term() error {
	e.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
		e.daemon = nil
		return e.exitErr
	case <-time.After(60 * time.Second):
		e.t.Fatal("daemon ignored SIGTERM for 60s")
		return nil
	}
}

func (e *env) stop() {
	if e.daemon != nil {
		e.kill()
	}
	e.killVMMs()
	e.checkPrivate()
}

// checkPrivate fails the test if anything in the state directory is open
// to the group or others (find STATE -perm /go+rwx prints nothing): the
// daemon's state holds guests' host keys and consoles.
func (e *env) checkPrivate() {
	var open []string
	filepath.WalkDir(e.stateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().Perm()&0o077 != 0 {
			open = append(open, fmt.Sprintf("%s %s", info.Mode(), strings.TrimPrefix(p, e.stateDir)))
		}
		return nil
	})
	if len(open) > 0 {
		if len(open) > 10 {
			open = append(open[:10], fmt.Sprintf("... %d more", len(open)-10))
		}
		e.t.Errorf("state open to others:\n%s", strings.Join(open, "\n"))
	}
}

// use makes t the test that env helpers fail, for a subtest sharing the
// env; the returned function restores the parent.
func (e *env) use(t *testing.T) func() {
	old := e.t
	e.t = t
	return func() { e.t = old }
}

// cliEnv is the environment of CLI commands: this env's socket, and an
// SSH key of its own rather than the user's.
func (e *env) cliEnv() []string {
	env := append(os.Environ(), "BANGER_SOCKET="+e.socket, "BANGER_SSH_KEY="+filepath.Join(e.dir, "id_ed25519"))
	return append(env, e.extraEnv...)
}

// killVMMs ends the VMM processes this env's daemon started (they outlive
// it by design), found by their state directory on their command line.
func (e *env) killVMMs() {
	for _, pid := range pidsWith(e.stateDir + "/") {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// pidsWith lists the running processes (not this one, no zombies) whose
// command line holds every one of substrs.
func pidsWith(substrs ...string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		all := true
		for _, s := range substrs {
			all = all && bytes.Contains(b, []byte(s))
		}
		if !all {
			continue
		}
		if st, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat")); err != nil || bytes.Contains(st, []byte(") Z ")) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (e *env) workdir() string {
	if e.cwd != "" {
		return e.cwd
	}
	return e.dir
}

// banger runs the CLI against this env's daemon.
func (e *env) banger(args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := e.command(ctx, bangerBin, args...)
	cmd.Env = e.cliEnv()
	cmd.Dir = e.workdir()
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("banger %v: %v", args, err)
	}
	return o.String(), er.String(), code
}

// mustBanger runs the CLI and fails the test on a non-zero exit.
func (e *env) mustBanger(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.banger(args...)
	if code != 0 {
		e.t.Fatalf("banger %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// startPull runs `kernel pull` in the background and returns a channel of
// its progress lines.
func (e *env) startPull(name string) (*exec.Cmd, <-chan string) {
	return e.startBanger("kernel", "pull", name)
}

// startPullImage runs `image pull` in the background.
func (e *env) startPullImage(name string) (*exec.Cmd, <-chan string) {
	return e.startBanger("image", "pull", name)
}

func (e *env) startBanger(args ...string) (*exec.Cmd, <-chan string) {
	cmd := exec.Command(bangerBin, args...)
	cmd.Env = e.cliEnv()
	cmd.Dir = e.workdir()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	e.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, lines
}

func waitLine(t *testing.T, lines <-chan string, substr string) {
	t.Helper()
	timeout := time.After(3 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before %q", substr)
			}
			if strings.Contains(l, substr) {
				return
			}
		case <-timeout:
			t.Fatalf("no %q within 3 minutes", substr)
		}
	}
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}
