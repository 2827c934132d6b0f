package flatten

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"testing"
)

// benchLayer is a layer of n files of size bytes each, in 100 directories.
func benchLayer(b *testing.B, n, size int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := bytes.Repeat([]byte("banger layer data "), size/18+1)[:size]
	for d := 0; d < 100; d++ {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%03d/", d), Typeflag: tar.TypeDir, Mode: 0o755})
	}
	for i := 0; i < n; i++ {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%03d/f%06d", i%100, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size)})
		tw.Write(body)
	}
	tw.Close()
	return buf.Bytes()
}

// BenchmarkFlatten measures applying one layer and writing the merged tar:
// the work banger adds between the registry and the ext4 writer.
func BenchmarkFlatten(b *testing.B) {
	for _, c := range []struct{ files, size int }{{10000, 512}, {1000, 64 << 10}} {
		l := benchLayer(b, c.files, c.size)
		b.Run(fmt.Sprintf("%dx%dB", c.files, c.size), func(b *testing.B) {
			b.SetBytes(int64(len(l)))
			dir := b.TempDir()
			for i := 0; i < b.N; i++ {
				t, err := New(dir, 0)
				if err != nil {
					b.Fatal(err)
				}
				if err := t.Apply(bytes.NewReader(l)); err != nil {
					b.Fatal(err)
				}
				if err := t.WriteTar(io.Discard); err != nil {
					b.Fatal(err)
				}
				t.Close()
			}
		})
	}
}
