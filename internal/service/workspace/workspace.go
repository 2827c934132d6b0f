// Package workspace is the daemon's half of the WorkspaceService: it turns
// a client's tar stream into a VM's work disk (the root daemon never walks
// a user's directory: the client reads it with its own rights and sends
// it), and reads a work disk back out as a tar stream, from the running
// guest or, for a stopped VM, from the disk itself without booting it.
//
// What the client does with the stream (git, on the host) is the client's
// own business: the daemon never runs git over a guest's repository.
package workspace

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/banger-dev/banger/internal/format/ext4"
	"github.com/banger-dev/banger/internal/format/guestdisk"
	"github.com/banger-dev/banger/internal/format/tarx"
	"github.com/banger-dev/banger/internal/kit/peer"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// DiskName is a work disk's file name in its VM's directory.
const DiskName = "work.ext4"

// SeedTTL is how long an uploaded seed waits for a VM create to claim it.
const SeedTTL = time.Hour

// Deps are the service's dependencies.
type Deps struct {
	Runner runner.Runner
	// Staging is a private directory of the state dir where seeds wait.
	Staging string
	// MaxSeedBytes bounds a seed's tar stream.
	MaxSeedBytes int64
	// DiskBytes is a work disk's size when the request names none; the
	// room beyond the seed is holes in the file until written.
	DiskBytes int64
	// Disks reads stopped VMs' work disks, sandboxed.
	Disks guestdisk.Reader
	// MaxPullBytes and MaxPullEntries bound a read of a VM's work.
	MaxPullBytes   int64
	MaxPullEntries int
	Log            *slog.Logger
}

// Service stages seeds and exports work disks.
type Service struct {
	d Deps
}

// New returns a Service.
func New(d Deps) *Service {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Service{d: d}
}

// MaxSeedBytes is the configured bound on a seed.
func (s *Service) MaxSeedBytes() int64 { return s.d.MaxSeedBytes }

func (s *Service) seedDir(id string) string { return filepath.Join(s.d.Staging, "seed-"+id) }

// Recover removes the seeds a previous daemon staged: no client waits for
// them any more.
func (s *Service) Recover() {
	s.expire(0)
}

// expire removes seeds older than age.
func (s *Service) expire(age time.Duration) {
	es, _ := os.ReadDir(s.d.Staging)
	for _, e := range es {
		if !strings.HasPrefix(e.Name(), "seed-") {
			continue
		}
		fi, err := e.Info()
		if err == nil && time.Since(fi.ModTime()) >= age {
			s.d.Log.Info("removing an unclaimed work seed", "seed", e.Name())
			os.RemoveAll(filepath.Join(s.d.Staging, e.Name()))
		}
	}
}

// Stage builds a work disk from the tar stream r and keeps it until a VM
// create claims it. meta carries what the client says of the seed
// (source directory, base commit, branch); the daemon measures the rest.
// diskBytes is the disk's size (0: the default); it grows to hold the
// seed with room to work when smaller. Nothing is left on failure.
func (s *Service) Stage(ctx context.Context, r io.Reader, meta api.Work, diskBytes int64) (api.Seed, error) {
	s.expire(SeedTTL)
	if err := checkMeta(meta); err != nil {
		return api.Seed{}, err
	}
	if diskBytes == 0 {
		diskBytes = s.d.DiskBytes
	}
	if diskBytes < 0 || diskBytes > ext4.MaxDiskSize {
		return api.Seed{}, fmt.Errorf("work disk size %d: between 1 MiB and %d GiB: %w", diskBytes, ext4.MaxDiskSize>>30, errdefs.ErrInvalid)
	}
	id := randomID()
	dir := s.seedDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return api.Seed{}, fmt.Errorf("stage work seed: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	sum := sha256.New()
	limited := &limitReader{r: r, left: s.d.MaxSeedBytes}
	// The stream is checked and re-written on its way to the disk writer:
	// each entry is one a work disk may hold, and spare inodes are added
	// at its end (see ext4.WorkDisk).
	pr, pw := io.Pipe()
	var c counts
	done := make(chan error, 1)
	go func() {
		var err error
		c, err = rewrite(io.TeeReader(limited, sum), pw)
		pw.CloseWithError(err)
		done <- err
	}()
	spares := func() (int, error) {
		// Whatever the writer left unread (the end marker's padding)
		// lets the rewrite finish.
		io.Copy(io.Discard, pr)
		if err := <-done; err != nil {
			return 0, err
		}
		return c.spares, nil
	}
	b := ext4.Builder{Runner: s.d.Runner, MinSize: (diskBytes + 4095) &^ 4095}
	size, err := b.WorkDisk(ctx, pr, filepath.Join(dir, DiskName), spares)
	// A writer that failed before reading the stream through must not
	// leave the rewrite blocked on the pipe.
	pr.CloseWithError(errors.New("work disk written"))
	if limited.over {
		return api.Seed{}, fmt.Errorf("the seed is larger than max_seed_bytes (%d MiB): seed a smaller directory, or raise max_seed_bytes in the daemon's config: %w", s.d.MaxSeedBytes>>20, errdefs.ErrInvalid)
	}
	if err != nil {
		if ctx.Err() != nil {
			return api.Seed{}, ctx.Err()
		}
		return api.Seed{}, fmt.Errorf("work seed: %w", err)
	}
	meta.Fingerprint = "sha256:" + hex.EncodeToString(sum.Sum(nil))
	meta.Files, meta.Bytes, meta.DiskBytes = c.files, c.bytes, size
	meta.SeededAt = time.Now().UTC()
	b2, _ := json.Marshal(staged{Work: meta, Owner: peer.UID(ctx)})
	if err := os.WriteFile(filepath.Join(dir, "seed.json"), b2, 0o600); err != nil {
		return api.Seed{}, fmt.Errorf("stage work seed: %w", err)
	}
	ok = true
	s.d.Log.Info("staged work seed", "seed", id, "source", meta.Source, "files", meta.Files, "bytes", meta.Bytes)
	return api.Seed{ID: id, Work: meta}, nil
}

// checkMeta bounds what the client says of its seed: it is shown, never
// used as a path by the daemon.
func checkMeta(m api.Work) error {
	for _, f := range []struct{ name, v string }{{"source", m.Source}, {"base", m.Base}, {"branch", m.Branch}} {
		if len(f.v) > 4096 || strings.ContainsAny(f.v, "\x00\n") {
			return fmt.Errorf("seed %s: too long or not one line: %w", f.name, errdefs.ErrInvalid)
		}
	}
	if m.Base != "" && !isHex(m.Base) {
		return fmt.Errorf("seed base %q is not a commit id: %w", m.Base, errdefs.ErrInvalid)
	}
	if m.SeedCommit != "" && !isHex(m.SeedCommit) {
		return fmt.Errorf("seed commit %q is not a commit id: %w", m.SeedCommit, errdefs.ErrInvalid)
	}
	return nil
}

func isHex(s string) bool {
	if len(s) < 4 || len(s) > 64 {
		return false
	}
	_, err := hex.DecodeString(s + strings.Repeat("0", len(s)%2))
	return err == nil
}

// staged is a staged seed's record: what it holds, and who sent it.
type staged struct {
	api.Work
	Owner uint32 `json:"owner"`
}

// seed reads the record of the staged seed id that ctx's caller sent:
// another user's seed is one that does not exist.
func (s *Service) seed(ctx context.Context, id string) (staged, error) {
	var st staged
	if !isHex(id) || len(id) != 32 {
		return st, fmt.Errorf("seed %q: not a seed id: %w", id, errdefs.ErrInvalid)
	}
	b, err := os.ReadFile(filepath.Join(s.seedDir(id), "seed.json"))
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil || !peer.Owns(ctx, st.Owner) {
		return st, fmt.Errorf("seed %s does not exist (seeds wait %s for a VM, and a daemon restart drops them): upload it again: %w", id, SeedTTL, errdefs.ErrNotFound)
	}
	return st, nil
}

// Claim moves a staged seed's disk, sent by ctx's caller, into a VM's
// directory and returns what it holds.
func (s *Service) Claim(ctx context.Context, id, vmDir string) (api.Work, error) {
	st, err := s.seed(ctx, id)
	if err != nil {
		return api.Work{}, err
	}
	dir := s.seedDir(id)
	if err := os.Rename(filepath.Join(dir, DiskName), filepath.Join(vmDir, DiskName)); err != nil {
		return api.Work{}, fmt.Errorf("claim seed %s: %w", id, err)
	}
	os.RemoveAll(dir)
	return st.Work, nil
}

// Discard removes a staged seed of ctx's caller that nobody will claim.
func (s *Service) Discard(ctx context.Context, id string) {
	if _, err := s.seed(ctx, id); err == nil {
		os.RemoveAll(s.seedDir(id))
	}
}

type counts struct {
	files, dirs, spares int
	bytes               int64
}

// rewrite copies the seed's tar stream to w, checking each entry the way
// a work disk may hold it (files, directories and links, nothing outside)
// and counting what it holds, then adds the spare entries. The input is
// read to its end, so that the fingerprint covers all of it.
func rewrite(r io.Reader, w io.Writer) (c counts, err error) {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return c, fmt.Errorf("not a whole tar stream: %w: %w", err, errdefs.ErrInvalid)
		}
		rel, err := tarx.Clean(hdr.Name)
		if err != nil {
			return c, err
		}
		if rel == ext4.SpareDir || strings.HasPrefix(rel, ext4.SpareDir+"/") {
			return c, fmt.Errorf("entry %q: a name banger keeps for itself: %w", hdr.Name, errdefs.ErrInvalid)
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
			c.files++
			c.bytes += hdr.Size
		case tar.TypeDir:
			c.dirs++
		default:
			return c, fmt.Errorf("entry %q: a work seed holds files, directories and links only: %w", hdr.Name, errdefs.ErrInvalid)
		}
		hdr.Name = rel
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return c, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return c, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return c, err
	}
	c.spares = ext4.SpareEntries(c.bytes, c.files+c.dirs)
	if c.spares > 0 {
		tw.WriteHeader(&tar.Header{Name: ext4.SpareDir + "/", Typeflag: tar.TypeDir, Mode: 0o700})
		for i := range c.spares {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%s/%d", ext4.SpareDir, i), Typeflag: tar.TypeReg, Mode: 0o600}); err != nil {
				return c, err
			}
		}
	}
	return c, tw.Close()
}

// limitReader fails once more than left bytes were read.
type limitReader struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte more tells a stream of exactly the limit from a
		// longer one.
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			l.over = true
			return 0, errors.New("seed too large")
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
