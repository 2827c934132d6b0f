package debpkg

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/banger-dev/banger/internal/format/debpkg/debtest"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func TestReadPackage(t *testing.T) {
	for _, comp := range []string{"gz", "zst"} {
		t.Run(comp, func(t *testing.T) {
			deb := debtest.Build("Package: linux-image-amd64\nVersion: 6.1\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2), foo | bar\nDescription: x\n more\n",
				[]debtest.File{{Name: "./boot/", Dir: true}, {Name: "./boot/vmlinuz-1", Body: []byte("odd")}}, comp)
			var ctl Control
			var names []string
			err := Read(bytes.NewReader(deb), Handler{
				Control: func(c Control) error { ctl = c; return nil },
				Data: func(tr *tar.Reader) error {
					for {
						h, err := tr.Next()
						if err == io.EOF {
							return nil
						}
						if err != nil {
							return err
						}
						names = append(names, h.Name)
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if ctl.Package() != "linux-image-amd64" {
				t.Errorf("package = %q", ctl.Package())
			}
			if got := ctl.Depends(); !reflect.DeepEqual(got, []string{"linux-image-6.1.0-56-amd64", "foo"}) {
				t.Errorf("depends = %v", got)
			}
			if ctl["Description"] != "x\nmore" {
				t.Errorf("description = %q", ctl["Description"])
			}
			if !reflect.DeepEqual(names, []string{"./boot/", "./boot/vmlinuz-1"}) {
				t.Errorf("data entries = %v", names)
			}
		})
	}
}

func TestReadRejects(t *testing.T) {
	good := debtest.Build("Package: x\n", []debtest.File{{Name: "./f", Body: []byte("abc")}}, "gz")
	tests := map[string][]byte{
		"not ar":     []byte("hello, this is plain text and not a package"),
		"empty":      nil,
		"truncated":  good[:len(good)-20],
		"only magic": []byte("!<arch>\n"),
	}
	for name, b := range tests {
		err := Read(bytes.NewReader(b), Handler{Data: func(tr *tar.Reader) error {
			for {
				if _, err := tr.Next(); err != nil {
					if err == io.EOF {
						return nil
					}
					return err
				}
			}
		}})
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if name != "truncated" && !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: %v is not ErrInvalid", name, err)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add(debtest.Build("Package: x\n", []debtest.File{{Name: "./f", Body: []byte("abc")}}, "gz"))
	f.Add([]byte("!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = Read(bytes.NewReader(b), Handler{
			Control: func(Control) error { return nil },
			Data: func(tr *tar.Reader) error {
				for i := 0; i < 100; i++ {
					if _, err := tr.Next(); err != nil {
						return nil
					}
				}
				return nil
			},
		})
	})
}
