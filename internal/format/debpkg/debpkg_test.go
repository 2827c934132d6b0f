package debpkg

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
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

// errHandler marks the errors the fuzz test's handler returns, which
// Read passes on as they are.
var errHandler = errors.New("handler")

// read is what Read gave a handler: the control files, and the data
// tarballs' entries with their bodies, read to a bound (maxEntries
// entries, maxBytes in all) so that no input takes long.
type read struct {
	controls []Control
	datas    int
	entries  []debtest.File
}

const maxEntries, maxBytes = 64, 1 << 20

func readAll(b []byte) (read, error) {
	var got read
	var total int64
	err := Read(bytes.NewReader(b), Handler{
		Control: func(c Control) error { got.controls = append(got.controls, c); return nil },
		Data: func(tr *tar.Reader) error {
			got.datas++
			for {
				h, err := tr.Next()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return fmt.Errorf("%w: data entry: %w", errHandler, err)
				}
				if len(got.entries) == maxEntries {
					return fmt.Errorf("%w: over %d entries", errHandler, maxEntries)
				}
				body, err := io.ReadAll(io.LimitReader(tr, maxBytes-total+1))
				if total += int64(len(body)); err != nil || total > maxBytes {
					return fmt.Errorf("%w: data body: over %d bytes, or %v", errHandler, maxBytes, err)
				}
				got.entries = append(got.entries, debtest.File{Name: h.Name, Body: body, Dir: h.Typeflag == tar.TypeDir, Link: h.Linkname})
			}
		},
	})
	return got, err
}

// FuzzRead holds Read to two promises. Any bytes: it does not panic, and
// either fails with ErrInvalid (or the handler's own error) or has found
// a package: the ar magic, a debian-binary member and a data tarball,
// which reached the handler. A package built of fuzzed fields (a
// control paragraph of Package and one more field, a data tarball of two
// files, gzip or zstd): Read gives back exactly the fields and files that
// went in.
func FuzzRead(f *testing.F) {
	one := debtest.Build("Package: x\n", []debtest.File{{Name: "./f", Body: []byte("abc")}}, "gz")
	two := debtest.Build("Package: linux-image-amd64\nDepends: a (>= 1), b | c\nDescription: x\n more\n",
		[]debtest.File{{Name: "./boot/", Dir: true}, {Name: "./boot/vmlinuz", Body: []byte("odd")}, {Name: "./vmlinuz", Link: "boot/vmlinuz"}}, "zst")
	for _, raw := range [][]byte{
		one,
		two,
		// The smallest package but for its data tarball, which it lacks.
		[]byte("!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n"),
		// Truncated inside the data member; and with a byte of its gzip
		// stream flipped.
		one[:len(one)-20],
		append(append(append([]byte{}, one[:len(one)-30]...), one[len(one)-30]^0xff), one[len(one)-29:]...),
		// A format dpkg never wrote; a data tarball of no compression dpkg
		// knows.
		bytes.Replace(one, []byte("2.0\n"), []byte("3.0\n"), 1),
		bytes.Replace(two, []byte("data.tar.zst"), []byte("data.tar.lz4"), 1),
		// A member whose size runs past the end.
		bytes.Replace(one, []byte("debian-binary   0           0     0     100644  4 "), []byte("debian-binary   0           0     0     100644  9999999999"), 1),
	} {
		f.Add(raw, "x", "Description", "a package\nof two lines", "./usr/bin/x", []byte("#!/bin/sh\n"), "./etc/x.conf", []byte{}, false)
	}
	f.Add([]byte(nil), "linux-image-6.1.0-56-amd64", "Depends", "linux-base (>= 4.3~), kmod", "./boot/vmlinuz-6.1.0-56-amd64", bytes.Repeat([]byte{0x7f}, 1000), "./lib/modules/6.1.0-56-amd64/modules.dep", []byte("kernel/x.ko:\n"), true)
	f.Add([]byte(nil), "", "X-Empty", "", "./a b/ü", []byte("odd"), "./"+strings.Repeat("long/", 30)+"name", []byte("x"), false)
	f.Fuzz(func(t *testing.T, raw []byte, pkg, field, value, name1 string, body1 []byte, name2 string, body2 []byte, zst bool) {
		got, err := readAll(raw)
		switch {
		case err != nil && !errors.Is(err, errdefs.ErrInvalid) && !errors.Is(err, errHandler):
			t.Fatalf("Read failed with %v, neither invalid nor the handler's", err)
		case err == nil && (!bytes.HasPrefix(raw, []byte(arMagic)) || !bytes.Contains(raw, []byte("debian-binary")) || got.datas == 0):
			t.Fatalf("Read accepted %q: no ar magic, debian-binary or data tarball (%d)", raw, got.datas)
		}

		control, fields, ok := paragraph(pkg, field, value)
		files := []debtest.File{{Name: name1, Body: body1}, {Name: name2, Body: body2}}
		if !ok || !tarable(files) {
			return
		}
		comp := "gz"
		if zst {
			comp = "zst"
		}
		got, err = readAll(debtest.Build(control, files, comp))
		if err != nil {
			t.Fatalf("Read of a built package: %v\ncontrol %q", err, control)
		}
		if len(got.controls) != 1 || !reflect.DeepEqual(got.controls[0], fields) {
			t.Errorf("control = %q, want %q (from %q)", got.controls, fields, control)
		}
		for i := range got.entries {
			if len(got.entries[i].Body) == 0 {
				got.entries[i].Body = nil
			}
		}
		for i := range files {
			if len(files[i].Body) == 0 {
				files[i].Body = nil
			}
		}
		if got.datas != 1 || !reflect.DeepEqual(got.entries, files) {
			t.Errorf("data entries = %+v, want %+v", got.entries, files)
		}
	})
}

// paragraph writes a control paragraph of Package: pkg and field: value
// (a value of several lines as deb822 continues one), with the fields
// ParseControl must read from it: each line trimmed, continuation lines
// joined by newlines, a field given twice its last value. ok is false
// for what is no field: a name with a colon, space or line break; a
// line break in pkg; a continuation line empty but for its space, which
// deb822 writes as " .".
func paragraph(pkg, field, value string) (text string, fields Control, ok bool) {
	if field == "" || strings.ContainsAny(field, ": \t\r\n") || strings.TrimSpace(field) != field || strings.ContainsAny(pkg, "\n") {
		return "", nil, false
	}
	lines := strings.Split(value, "\n")
	for _, l := range lines[1:] {
		if strings.TrimSpace(l) == "" {
			return "", nil, false
		}
	}
	text = "Package: " + pkg + "\n" + field + ": " + lines[0] + "\n"
	want := strings.TrimSpace(lines[0])
	for _, l := range lines[1:] {
		text += " " + l + "\n"
		want += "\n" + strings.TrimSpace(l)
	}
	fields = Control{"Package": strings.TrimSpace(pkg)}
	fields[field] = want
	return text, fields, true
}

// tarable says whether a tar stream can hold files as they are: debtest
// builds what it is given, and a name tar refuses would be missing.
func tarable(files []debtest.File) bool {
	tw := tar.NewWriter(io.Discard)
	for _, f := range files {
		if f.Name == "" || tw.WriteHeader(&tar.Header{Name: f.Name, Mode: 0o644, Size: int64(len(f.Body)), Typeflag: tar.TypeReg}) != nil {
			return false
		}
		tw.Write(f.Body)
	}
	return true
}
