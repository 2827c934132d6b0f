// Package debtest builds small Debian packages for tests.
package debtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// File is one entry of a package's data tarball.
type File struct {
	Name string
	Body []byte
	Link string // symlink target when set
	Dir  bool
}

// Build returns a .deb whose control file is control and whose data
// tarball, compressed as comp ("gz" or "zst"), holds files.
func Build(control string, files []File, comp string) []byte {
	var data bytes.Buffer
	tw := tar.NewWriter(&data)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: 0o644, Size: int64(len(f.Body)), Typeflag: tar.TypeReg}
		switch {
		case f.Dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, f.Link, 0
		}
		tw.WriteHeader(h)
		tw.Write(f.Body)
	}
	tw.Close()

	var ctl bytes.Buffer
	cw := tar.NewWriter(&ctl)
	cw.WriteHeader(&tar.Header{Name: "./control", Mode: 0o644, Size: int64(len(control)), Typeflag: tar.TypeReg})
	io.WriteString(cw, control)
	cw.Close()

	var out bytes.Buffer
	out.WriteString("!<arch>\n")
	member(&out, "debian-binary", []byte("2.0\n"))
	member(&out, "control.tar.gz", compress(ctl.Bytes(), "gz"))
	member(&out, "data.tar."+comp, compress(data.Bytes(), comp))
	return out.Bytes()
}

func compress(b []byte, comp string) []byte {
	var buf bytes.Buffer
	switch comp {
	case "gz":
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
	case "zst":
		w, _ := zstd.NewWriter(&buf)
		w.Write(b)
		w.Close()
	default:
		panic("debtest: unknown compression " + comp)
	}
	return buf.Bytes()
}

func member(out *bytes.Buffer, name string, body []byte) {
	fmt.Fprintf(out, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(body))
	out.Write(body)
	if len(body)%2 == 1 {
		out.WriteByte('\n')
	}
}
