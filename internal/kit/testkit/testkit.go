// Package testkit holds helpers shared by tests of several packages: what
// a test needs (skipped without it, failed under CI=true), a test run
// again as nobody, git run as a test needs it, and tar streams read back
// into something a test can compare. Only tests import it.
package testkit

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Need skips a test when ok is false, or fails it under CI=true, where
// the CI host is set up to have what tests need: a suite that skips what
// it cannot run would pass having tested nothing. what says what is
// missing and how to get it ("needs root: run go test as root").
func Need(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: a skip here would hide a test that never ran)", what)
	}
	t.Skip(what)
}

// NeedTools is Need for tools that must be installed; pkg is the Debian
// package to install.
func NeedTools(t testing.TB, pkg string, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		_, err := exec.LookPath(tool)
		Need(t, err == nil, fmt.Sprintf("%s missing: apt-get install %s", tool, pkg))
	}
}

// NeedRoot is Need for root, which why says the test needs it for.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	Need(t, os.Geteuid() == 0, fmt.Sprintf("%s needs root: run the tests as root", why))
}

// asNobodyEnv marks the process AsNobody starts.
const asNobodyEnv = "BANGER_TEST_AS_NOBODY"

// Nobody is the uid and gid AsNobody runs a test as.
const Nobody = 65534

// AsNobody runs the calling test again as uid and gid Nobody, in a
// process of its own, when the test runs as root, and reports whether it
// did so (the caller then returns: the process as nobody ran the test).
// A test of what a missing permission does proves nothing as root, who
// has every one, and CI runs as root. The test binary is copied to a
// directory Nobody can reach, TMPDIR and HOME are Nobody's own, and the
// run must pass, not skip.
func AsNobody(t *testing.T) bool {
	t.Helper()
	if os.Getenv(asNobodyEnv) != "" {
		if os.Geteuid() != Nobody {
			t.Fatalf("%s=1 but running as uid %d, not %d", asNobodyEnv, os.Geteuid(), Nobody)
		}
		return false
	}
	if os.Geteuid() != 0 {
		return false
	}
	dir, err := os.MkdirTemp("", "as-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, home := filepath.Join(dir, "test"), filepath.Join(dir, "home")
	if err := copyExecutable(bin); err != nil {
		t.Fatalf("copy the test binary: %v", err)
	}
	err = os.Mkdir(home, 0o700)
	if err == nil {
		err = os.Chown(home, Nobody, Nobody)
	}
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		t.Fatalf("a home for uid %d: %v", Nobody, err)
	}
	var run []string
	for _, part := range strings.Split(t.Name(), "/") {
		run = append(run, "^"+regexp.QuoteMeta(part)+"$")
	}
	cmd := exec.Command(bin, "-test.run="+strings.Join(run, "/"), "-test.v", "-test.count=1")
	cmd.Dir = home
	cmd.Env = append(os.Environ(), asNobodyEnv+"=1", "HOME="+home, "TMPDIR="+home)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: Nobody, Gid: Nobody}}
	out, err := cmd.CombinedOutput()
	t.Logf("as uid %d:\n%s", Nobody, out)
	if err != nil {
		t.Fatalf("%s as uid %d: %v", t.Name(), Nobody, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
		t.Fatalf("%s did not pass as uid %d (skipped, or not run)", t.Name(), Nobody)
	}
	return true
}

// copyExecutable copies the running test binary to path, executable by
// all.
func copyExecutable(path string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Mkfs makes an ext4 image of size (as mkfs.ext4 takes it, "64M") holding
// dir, with the real mkfs.ext4 and its extra options, and returns its
// path: a disk as a guest's kernel would find it.
func Mkfs(t testing.TB, dir, size string, extra ...string) string {
	t.Helper()
	NeedTools(t, "e2fsprogs", "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "disk.ext4")
	args := append(append([]string{"-q", "-F", "-d", dir}, extra...), img, size)
	if out, err := exec.Command("mkfs.ext4", args...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img
}

// NeedGit is NeedTools for git.
func NeedGit(t testing.TB) { t.Helper(); NeedTools(t, "git", "git") }

// Git runs git in dir with a fixed identity and no global config, and
// returns its output; a failure fails the test.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=T", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TarEntry is one entry of a tar stream, with its content.
type TarEntry struct {
	Header *tar.Header
	Body   string
}

// ReadTar reads a tar stream into its entries by name.
func ReadTar(t testing.TB, r io.Reader) map[string]TarEntry {
	t.Helper()
	out := map[string]TarEntry{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		var b bytes.Buffer
		b.ReadFrom(tr)
		out[h.Name] = TarEntry{h, b.String()}
	}
}

// TarSpec is one entry of a tar stream a test builds: a regular file
// unless Type says otherwise; Mode 0 means 0644 (0755 for a directory).
type TarSpec struct {
	Name, Body, Link string
	Type             byte
	Mode             int64
	UID, GID         int
	// Capability, when set, is a security.capability xattr.
	Capability string
}

// Tar builds a tar stream of the given entries, with a fixed mtime so
// that the same entries always make the same bytes. A character device
// is 1,3 (/dev/null).
func Tar(t testing.TB, specs []TarSpec) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, s := range specs {
		typ := s.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := s.Mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		h := &tar.Header{Name: s.Name, Linkname: s.Link, Typeflag: typ, Mode: mode, Uid: s.UID, Gid: s.GID,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(s.Body))
		}
		if typ == tar.TypeChar {
			h.Devmajor, h.Devminor = 1, 3
		}
		if s.Capability != "" {
			h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": s.Capability}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, s.Body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// SyncBuffer is a buffer that a process's output (or a logger) writes to
// while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *SyncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

// String reads what was written so far, while writers may write on.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
