// Package testkit holds helpers shared by tests of several packages: git
// run as a test needs it, and tar streams read back into something a test
// can compare. Only tests import it.
package testkit

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"testing"
)

// NeedGit skips a test without git, or fails it under CI=true, where the
// tool must be installed.
func NeedGit(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git missing: apt-get install git")
		}
		t.Skip("git missing: apt-get install git")
	}
}

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
