package image

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/banger-dev/banger/internal/format/flatten"
	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// AptDir is where the host's apt configuration lives.
var AptDir = "/etc/apt"

// debootstrap builds a root file system with mmdebstrap from the host's
// own package sources for the suite, then writes it like an OCI image.
func (s *Service) debootstrap(ctx context.Context, src api.ImageSource, dir string, p operation.Progress) (built, error) {
	if _, err := s.d.Runner.LookPath("mmdebstrap"); err != nil {
		return built{}, fmt.Errorf("mmdebstrap is not installed (apt-get install mmdebstrap): %w", errdefs.ErrUnavailable)
	}
	lines, err := HostSources(AptDir, src.Suite)
	if err != nil {
		return built{}, err
	}
	list := filepath.Join(dir, "sources.list")
	if err := os.WriteFile(list, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return built{}, err
	}
	tarball := filepath.Join(dir, "rootfs.tar")
	args := []string{"--quiet", "--format=tar"}
	if src.Variant != "" {
		args = append(args, "--variant="+src.Variant)
	}
	if len(src.Packages) > 0 {
		args = append(args, "--include="+strings.Join(src.Packages, ","))
	}
	args = append(args, src.Suite, tarball, list)
	// mmdebstrap builds its tree in TMPDIR: inside the build directory,
	// a daemon killed mid-build leaves it in staging, which the next
	// start sweeps, instead of in the host's /tmp for good.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return built{}, err
	}
	defer os.RemoveAll(tmp)
	p.Stage("build", "building %s with mmdebstrap from this host's package sources (%d source lines)", src.Suite, len(lines))
	if _, err := s.d.Runner.Run(ctx, runner.Cmd{Name: "mmdebstrap", Args: args, GuestTree: true, Env: []string{"TMPDIR=" + tmp}}); err != nil {
		if ctx.Err() != nil {
			return built{}, ctx.Err()
		}
		return built{}, fmt.Errorf("mmdebstrap: %w: %w", err, errdefs.ErrUnavailable)
	}
	tree, err := flatten.New(dir, s.d.MaxUnpacked)
	if err != nil {
		return built{}, err
	}
	defer tree.Close()
	f, err := os.Open(tarball)
	if err != nil {
		return built{}, err
	}
	err = s.streamDisk(ctx, tree, dir, p, func(w io.Writer, extras []flatten.Extra) (int, error) {
		if len(src.Services) > 0 {
			extras = append(extras, flatten.Extra{Path: guestproto.ServicesFile, Mode: 0o644, Body: []byte(strings.Join(src.Services, "\n") + "\n")})
		}
		return tree.Stream(operation.NewReader(ctx, f, 0, nil), w, extras)
	})
	f.Close()
	os.Remove(tarball)
	if err != nil {
		return built{}, err
	}
	os.Remove(list)
	return built{sourceKind: api.SourceDebootstrap, source: fmt.Sprintf("mmdebstrap %s (host package sources)", src.Suite), digest: "-", layers: 1, files: tree.Files()}, nil
}

// HostSources returns one-line apt source entries for suite (and its
// -updates and -security companions) taken from the host's own apt
// configuration under aptDir: banger never names a mirror itself.
func HostSources(aptDir, suite string) ([]string, error) {
	want := map[string]bool{suite: true, suite + "-updates": true, suite + "-security": true, suite + "/updates": true}
	var out []string
	files := []string{filepath.Join(aptDir, "sources.list")}
	more, _ := filepath.Glob(filepath.Join(aptDir, "sources.list.d", "*"))
	files = append(files, more...)
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		switch {
		case strings.HasSuffix(path, ".sources"):
			out = append(out, deb822Lines(string(b), want)...)
		case strings.HasSuffix(path, ".list"):
			sc := bufio.NewScanner(strings.NewReader(string(b)))
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				f := strings.Fields(line)
				if len(f) < 3 || f[0] != "deb" {
					continue
				}
				i := 1
				if strings.HasPrefix(f[1], "[") {
					for i < len(f) && !strings.HasSuffix(f[i], "]") {
						i++
					}
					i++
				}
				if i+1 < len(f) && want[f[i+1]] {
					out = append(out, line)
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("this host's apt sources (%s) have no entry for suite %q: %w", aptDir, suite, errdefs.ErrUnavailable)
	}
	return out, nil
}

// deb822Lines turns the matching stanzas of a .sources file into
// one-line entries.
func deb822Lines(doc string, want map[string]bool) []string {
	var out []string
	for _, stanza := range strings.Split(doc, "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok && !strings.HasPrefix(line, " ") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !strings.Contains(" "+fields["types"]+" ", " deb ") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		opts := ""
		if sb := fields["signed-by"]; sb != "" && !strings.Contains(sb, "\n") {
			opts = "[signed-by=" + sb + "] "
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			for _, s := range strings.Fields(fields["suites"]) {
				if want[s] {
					out = append(out, fmt.Sprintf("deb %s%s %s %s", opts, uri, s, fields["components"]))
				}
			}
		}
	}
	return out
}
