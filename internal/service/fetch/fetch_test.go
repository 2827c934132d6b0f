package fetch

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// stages records the lines a Progress is given.
type stages []string

func (s *stages) Stage(stage, format string, args ...any) {
	*s = append(*s, stage+": "+fmt.Sprintf(format, args...))
}
func (s *stages) Bytes(string, int64, int64) {}

var errBroken = fmt.Errorf("mirror is down: %w", errdefs.ErrUnavailable)

// firstOfTests try sources "a", "b", ... as a kernel k's.
var firstOfTests = []struct {
	name    string
	sources []string
	// fails says which sources fail; cancels, which cancel the work
	// as they fail (a user's cancel arriving mid-download).
	fails      map[string]bool
	cancels    map[string]bool
	wantTried  []string
	wantGot    string
	wantErr    string // the whole message, when an error is expected
	wantIs     error
	wantStages []string
	wantLogged int // failures logged
}{{
	name:      "the first source works",
	sources:   []string{"a", "b"},
	wantTried: []string{"a"},
	wantGot:   "from a",
	wantStages: []string{
		"source: kernel k: trying source 1 of 2: src a",
	},
}, {
	name:      "the first that works wins",
	sources:   []string{"a", "b", "c"},
	fails:     map[string]bool{"a": true},
	wantTried: []string{"a", "b"},
	wantGot:   "from b",
	wantStages: []string{
		"source: kernel k: trying source 1 of 3: src a",
		"source: source 1 failed: try a: mirror is down",
		"source: kernel k: trying source 2 of 3: src b",
	},
	wantLogged: 1,
}, {
	name:       "a lone source's error is the pull's",
	sources:    []string{"a"},
	fails:      map[string]bool{"a": true},
	wantTried:  []string{"a"},
	wantErr:    "pull kernel k: source 1 (src a): try a: mirror is down: unavailable",
	wantIs:     errdefs.ErrUnavailable,
	wantLogged: 1,
}, {
	name:      "every failure is reported, in order",
	sources:   []string{"a", "b"},
	fails:     map[string]bool{"a": true, "b": true},
	wantTried: []string{"a", "b"},
	wantErr:   "pull kernel k: no source worked: source 1 (src a): try a: mirror is down: unavailable\nsource 2 (src b): try b: mirror is down: unavailable",
	wantIs:    errdefs.ErrUnavailable,
	wantStages: []string{
		"source: kernel k: trying source 1 of 2: src a",
		"source: source 1 failed: try a: mirror is down",
		"source: kernel k: trying source 2 of 2: src b",
		"source: source 2 failed: try b: mirror is down",
	},
	wantLogged: 2,
}, {
	name:      "a cancel stops the loop",
	sources:   []string{"a", "b"},
	fails:     map[string]bool{"a": true},
	cancels:   map[string]bool{"a": true},
	wantTried: []string{"a"},
	wantErr:   "context canceled",
	wantIs:    context.Canceled,
	wantStages: []string{
		"source: kernel k: trying source 1 of 2: src a",
	},
}, {
	name:    "no sources",
	wantErr: "pull kernel k: the catalog entry has no sources: invalid",
	wantIs:  errdefs.ErrInvalid,
}}

func TestFirstOf(t *testing.T) {
	for _, tt := range firstOfTests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var tried []string
			var p stages
			var log bytes.Buffer
			target := Target{Kind: "kernel", Name: "k", Log: slog.New(slog.NewTextHandler(&log, nil))}
			got, err := FirstOf(ctx, target, tt.sources,
				func(s string) string { return "src " + s },
				func(ctx context.Context, s string) (string, error) {
					tried = append(tried, s)
					if tt.cancels[s] {
						cancel()
					}
					if tt.fails[s] {
						return "partial " + s, fmt.Errorf("try %s: %w", s, errBroken)
					}
					return "from " + s, nil
				}, &p)
			if !reflect.DeepEqual(tried, tt.wantTried) {
				t.Errorf("tried %v, want %v", tried, tt.wantTried)
			}
			if tt.wantErr == "" {
				if err != nil || got != tt.wantGot {
					t.Errorf("got %q, %v; want %q", got, err, tt.wantGot)
				}
			} else if err == nil || err.Error() != tt.wantErr || !errors.Is(err, tt.wantIs) || got != "" {
				t.Errorf("got %q, %v\nwant the error %q", got, err, tt.wantErr)
			}
			if tt.wantStages != nil && !reflect.DeepEqual([]string(p), tt.wantStages) {
				t.Errorf("stages:\n%s\nwant\n%s", strings.Join(p, "\n"), strings.Join(tt.wantStages, "\n"))
			}
			if n := strings.Count(log.String(), `msg="kernel source failed" kernel=k source="src `); n != tt.wantLogged {
				t.Errorf("logged %d failures, want %d:\n%s", n, tt.wantLogged, log.String())
			}
		})
	}
}

// tarball is a tar archive of files with the given names and contents.
func tarball(t *testing.T, files ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; i+1 < len(files); i += 2 {
		body := files[i+1]
		if err := tw.WriteHeader(&tar.Header{Name: files[i], Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// canceledReader fails as a reader does whose work was canceled.
type canceledReader struct{}

func (canceledReader) Read([]byte) (int, error) { return 0, errors.New("read on closed body") }

func TestEachEntry(t *testing.T) {
	archive := tarball(t, "a", "one", "b", "two", "c", "three")
	errStop := errors.New("stop here")
	tests := []struct {
		name     string
		r        io.Reader
		cancel   bool
		stopAt   string
		wantSeen []string
		wantErr  string
		wantIs   error
	}{
		{name: "every entry in order", r: bytes.NewReader(archive), wantSeen: []string{"a=one", "b=two", "c=three"}},
		{name: "an empty archive", r: bytes.NewReader(tarball(t)), wantSeen: nil},
		{name: "each's error stops the walk as is", r: bytes.NewReader(archive), stopAt: "b", wantSeen: []string{"a=one", "b=two"}, wantErr: "stop here", wantIs: errStop},
		{name: "a cut archive is what bad says", r: bytes.NewReader(archive[:1024+100]), wantSeen: []string{"a=one"}, wantErr: "bad archive: unexpected EOF: invalid", wantIs: io.ErrUnexpectedEOF},
		{name: "not an archive is what bad says", r: strings.NewReader(strings.Repeat("x", 1024)), wantErr: "bad archive: archive/tar: invalid tar header: invalid", wantIs: errdefs.ErrInvalid},
		{name: "a read a cancel broke is the cancel", r: canceledReader{}, cancel: true, wantErr: "context canceled", wantIs: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			bad := func(err error) error { return fmt.Errorf("bad archive: %w: %w", err, errdefs.ErrInvalid) }
			var seen []string
			err := EachEntry(ctx, tar.NewReader(tt.r), bad, func(h *tar.Header, body io.Reader) error {
				b, err := io.ReadAll(body)
				if err != nil {
					return err
				}
				seen = append(seen, h.Name+"="+string(b))
				if h.Name == tt.stopAt {
					return errStop
				}
				return nil
			})
			if !reflect.DeepEqual(seen, tt.wantSeen) {
				t.Errorf("saw %v, want %v", seen, tt.wantSeen)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("EachEntry: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, tt.wantIs) {
				t.Errorf("EachEntry: %v, want %q (is %v)", err, tt.wantErr, tt.wantIs)
			}
		})
	}
}
