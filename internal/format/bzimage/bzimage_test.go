package bzimage

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestExtract(t *testing.T) {
	want, err := os.ReadFile("testdata/payload")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ file, comp string }{
		{"bzimage-gzip", "gzip"},
		{"bzimage-xz-bcj", "xz"},
		{"bzimage-bzip2", "bzip2"},
	} {
		t.Run(tt.comp, func(t *testing.T) {
			img, err := os.ReadFile("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			r := bytes.NewReader(img)
			if Detect(r) != BzImage {
				t.Fatal("not detected as bzImage")
			}
			if _, _, c, err := Payload(r); err != nil || c != tt.comp {
				t.Fatalf("payload compression = %q, %v", c, err)
			}
			var out bytes.Buffer
			n, err := Extract(r, &out, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(want)) || !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("extracted %d bytes, differs from payload", n)
			}
			if Detect(bytes.NewReader(out.Bytes())) != ELF {
				t.Fatal("result not detected as ELF")
			}
		})
	}
}

func TestExtractRejects(t *testing.T) {
	gz, _ := os.ReadFile("testdata/bzimage-gzip")
	tests := map[string]struct {
		img  []byte
		want string
	}{
		"text":       {[]byte(strings.Repeat("not a kernel ", 100)), "not a bzImage"},
		"short":      {[]byte("HdrS"), "too short"},
		"truncated":  {gz[:len(gz)-400], "decompress"},
		"over limit": {gz, "limit"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			limit := int64(1 << 20)
			if name == "over limit" {
				limit = 100
			}
			_, err := Extract(bytes.NewReader(tt.img), &bytes.Buffer{}, limit)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("err = %v, want invalid containing %q", err, tt.want)
			}
		})
	}
}

func FuzzExtract(f *testing.F) {
	for _, name := range []string{"bzimage-gzip", "bzimage-xz-bcj", "bzimage-bzip2"} {
		b, _ := os.ReadFile("testdata/" + name)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		n, err := Extract(bytes.NewReader(b), &out, 1<<20)
		if err == nil && (n != int64(out.Len()) || !bytes.HasPrefix(out.Bytes(), elfMagic)) {
			t.Fatalf("accepted output that is not an ELF file")
		}
	})
}
