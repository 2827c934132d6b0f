// Package debpkg reads Debian binary packages (.deb) in Go: the ar
// container, the control file, and the data tarball in any of the
// compressions dpkg writes (xz, zstd, gzip, bzip2, none).
package debpkg

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/xi2/xz"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

const arMagic = "!<arch>\n"

// Control holds the fields of a package's control file.
type Control map[string]string

// Package returns the package name.
func (c Control) Package() string { return c["Package"] }

// Depends returns the names of the packages in the Depends field, without
// versions; for alternatives only the first is kept.
func (c Control) Depends() []string {
	var out []string
	for _, d := range strings.Split(c["Depends"], ",") {
		d = strings.TrimSpace(strings.Split(d, "|")[0])
		if i := strings.IndexAny(d, " (:"); i >= 0 {
			d = d[:i]
		}
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// Handler receives the parts of a package as they stream by. Control is
// called before Data when the package is laid out as dpkg writes it.
type Handler struct {
	Control func(Control) error
	Data    func(tr *tar.Reader) error
}

// Read streams the package from r, calling h for its control file and its
// data tarball.
func Read(r io.Reader, h Handler) error {
	br := bufio.NewReaderSize(r, 1<<20)
	magic := make([]byte, len(arMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != arMagic {
		return fmt.Errorf("not a Debian package (no ar archive header): %w", errdefs.ErrInvalid)
	}
	sawBinary, sawData := false, false
	for {
		var hdr [60]byte
		if _, err := io.ReadFull(br, hdr[:]); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("read ar member header: archive is truncated: %w", errdefs.ErrInvalid)
		}
		if string(hdr[58:60]) != "`\n" {
			return fmt.Errorf("corrupt ar member header: %w", errdefs.ErrInvalid)
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("ar member %s: bad size: %w", errdefs.Quote(name), errdefs.ErrInvalid)
		}
		body := &countingReader{r: io.LimitReader(br, size)}
		switch {
		case name == "debian-binary":
			b, _ := io.ReadAll(io.LimitReader(body, 64))
			if !strings.HasPrefix(string(b), "2.") {
				return fmt.Errorf("unsupported Debian package format %s: %w", errdefs.Quote(strings.TrimSpace(string(b))), errdefs.ErrInvalid)
			}
			sawBinary = true
		case strings.HasPrefix(name, "control.tar"):
			if h.Control != nil {
				ctl, err := readControl(name, body)
				if err != nil {
					return err
				}
				if err := h.Control(ctl); err != nil {
					return err
				}
			}
		case strings.HasPrefix(name, "data.tar"):
			sawData = true
			if h.Data != nil {
				dr, closeFn, err := Decompress(name, body)
				if err != nil {
					return err
				}
				err = h.Data(tar.NewReader(dr))
				closeFn()
				if err != nil {
					return err
				}
			}
		}
		// Skip what the handler left unread, then the even-padding byte.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return fmt.Errorf("ar member %s: %w", errdefs.Quote(name), err)
		}
		if body.n != size {
			return fmt.Errorf("ar member %s: archive is truncated (%d of %d bytes): %w", errdefs.Quote(name), body.n, size, errdefs.ErrInvalid)
		}
		if size%2 == 1 {
			if _, err := br.ReadByte(); err != nil && err != io.EOF {
				return err
			}
		}
	}
	if !sawBinary || !sawData {
		return fmt.Errorf("not a Debian binary package (missing debian-binary or data.tar): %w", errdefs.ErrInvalid)
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Decompress opens a tar member by the compression its name says.
func Decompress(name string, r io.Reader) (io.Reader, func(), error) {
	nop := func() {}
	switch {
	case strings.HasSuffix(name, ".xz"):
		xr, err := xz.NewReader(r, 0)
		if err != nil {
			return nil, nop, fmt.Errorf("%s: %w: %w", name, err, errdefs.ErrInvalid)
		}
		return xr, nop, nil
	case strings.HasSuffix(name, ".zst"):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nop, fmt.Errorf("%s: %w: %w", name, err, errdefs.ErrInvalid)
		}
		return zr, zr.Close, nil
	case strings.HasSuffix(name, ".gz"):
		gr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nop, fmt.Errorf("%s: %w: %w", name, err, errdefs.ErrInvalid)
		}
		return gr, func() { gr.Close() }, nil
	case strings.HasSuffix(name, ".bz2"):
		return bzip2.NewReader(r), nop, nil
	case strings.HasSuffix(name, ".tar"):
		return r, nop, nil
	default:
		return nil, nop, fmt.Errorf("%s: unsupported compression: %w", name, errdefs.ErrInvalid)
	}
}

func readControl(member string, r io.Reader) (Control, error) {
	dr, closeFn, err := Decompress(member, r)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	tr := tar.NewReader(dr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s: no control file: %w", member, errdefs.ErrInvalid)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", member, err, errdefs.ErrInvalid)
		}
		if strings.TrimPrefix(h.Name, "./") != "control" {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", member, err, errdefs.ErrInvalid)
		}
		return ParseControl(b), nil
	}
}

// ParseControl parses a deb822 control paragraph. Continuation lines are
// appended to their field.
func ParseControl(b []byte) Control {
	c := Control{}
	var last string
	for _, line := range bytes.Split(b, []byte("\n")) {
		s := string(line)
		if s == "" {
			if len(c) > 0 {
				break
			}
			continue
		}
		if (s[0] == ' ' || s[0] == '\t') && last != "" {
			c[last] += "\n" + strings.TrimSpace(s)
			continue
		}
		k, v, ok := strings.Cut(s, ":")
		if !ok {
			continue
		}
		last = strings.TrimSpace(k)
		c[last] = strings.TrimSpace(v)
	}
	return c
}
