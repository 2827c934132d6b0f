// Package initramfs builds banger's own minimal initramfs for a modular
// kernel: the guest agent as /init plus exactly the modules a guest needs
// to reach its disks and network (virtio, ext4 and what they depend on,
// read from each module's .modinfo), and no udev. The agent loads them in
// the order listed in /etc/banger/modules, mounts the root disk and
// switches to it.
package initramfs

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/gzip"
	"github.com/xi2/xz"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Wanted are the modules a banger guest needs, when the kernel has them as
// modules rather than built in. crc32c_generic is what ext4's checksums
// ask the crypto API for, which would otherwise need a modprobe helper.
//
// Nothing else: each module costs boot time (under TCG, loading 19 modules
// took about 0.4 s), and the agent reports over the serial console.
var Wanted = []string{"virtio_mmio", "virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "ext4"}

// ModulesList is where the load order is written inside the initramfs.
const ModulesList = "etc/banger/modules"

// Module is one loadable module of a kernel release.
type Module struct {
	Name    string
	Path    string // relative to the release directory
	Depends []string
}

// modName normalizes a module file name the way the kernel does.
func modName(file string) string {
	base := filepath.Base(file)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(base, ".ko"), "-", "_")
}

// Scan reads every module under a release directory (/lib/modules/REL).
func Scan(releaseDir string) (map[string]Module, error) {
	mods := map[string]Module{}
	err := filepath.WalkDir(releaseDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.Contains(d.Name(), ".ko") {
			return nil
		}
		rel, _ := filepath.Rel(releaseDir, path)
		mods[modName(path)] = Module{Name: modName(path), Path: rel}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan modules %s: %w", releaseDir, err)
	}
	return mods, nil
}

// Builtin lists the modules compiled into the kernel, from modules.builtin.
func Builtin(releaseDir string) map[string]bool {
	out := map[string]bool{}
	b, err := os.ReadFile(filepath.Join(releaseDir, "modules.builtin"))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line != "" {
			out[modName(line)] = true
		}
	}
	return out
}

// readModule returns a module file's bytes, decompressed.
func readModule(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(path, ".xz") {
		r, err := xz.NewReader(bytes.NewReader(b), 0)
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	}
	if strings.HasSuffix(path, ".gz") {
		r, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	}
	return b, nil
}

// sigMagic ends a module with an appended signature.
const sigMagic = "~Module signature appended~\n"

// StripSignature removes a module's appended signature. A kernel that
// does not enforce signatures (Debian's) still verifies one that is there:
// hashing each module under TCG, where ext4.ko alone is 2 MiB. The
// modules come from the kernel package banger verified when it pulled it,
// and the guest kernel's trust in them protects nothing of the host.
// A module without a well-formed signature is returned as it is.
func StripSignature(ko []byte) []byte {
	// module data, signature, struct module_signature (12 bytes: algo,
	// hash, id_type, signer_len, key_id_len, 3 bytes pad, big-endian
	// sig_len), magic.
	const info = 12
	if len(ko) < len(sigMagic)+info || string(ko[len(ko)-len(sigMagic):]) != sigMagic {
		return ko
	}
	end := len(ko) - len(sigMagic)
	ms := ko[end-info : end]
	sigLen := int(ms[8])<<24 | int(ms[9])<<16 | int(ms[10])<<8 | int(ms[11])
	total := info + sigLen + int(ms[3]) + int(ms[4])
	if total > end {
		return ko
	}
	return ko[:end-total]
}

// Depends reads the depends= field of a module's .modinfo section.
func Depends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("not an ELF module: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(v) > 0 {
			for _, d := range strings.Split(string(v), ",") {
				deps = append(deps, modName(d))
			}
		}
	}
	return deps, nil
}

// Closure returns wanted and everything they depend on, dependencies
// first. Wanted modules the kernel lacks or has built in are skipped.
func Closure(mods map[string]Module, builtin map[string]bool, wanted []string, depends func(Module) ([]string, error)) ([]Module, error) {
	var order []Module
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(name string, required bool) error
	visit = func(name string, required bool) error {
		if builtin[name] || state[name] == 2 {
			return nil
		}
		if state[name] == 1 {
			return fmt.Errorf("module dependency cycle at %s: %w", name, errdefs.ErrInvalid)
		}
		m, ok := mods[name]
		if !ok {
			if required {
				return fmt.Errorf("module %s is needed but not in the kernel's modules: %w", name, errdefs.ErrInvalid)
			}
			return nil
		}
		state[name] = 1
		deps, err := depends(m)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		sort.Strings(deps)
		for _, d := range deps {
			if err := visit(d, true); err != nil {
				return err
			}
		}
		state[name] = 2
		m.Depends = deps
		order = append(order, m)
		return nil
	}
	for _, w := range wanted {
		if err := visit(w, false); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Format names what Build writes; it is part of the cache key of built
// initramfs files, so a change here (modules, compression, layout) is a
// new cache entry, never a stale one.
const Format = "v3"

// Build writes an uncompressed newc initramfs to w: the agent as /init,
// the needed modules of the release under releaseDir (which may be empty
// for a kernel without modules), and their load order.
func Build(w io.Writer, agent, releaseDir string) ([]Module, error) {
	var mods []Module
	if releaseDir != "" {
		all, err := Scan(releaseDir)
		if err != nil {
			return nil, err
		}
		mods, err = Closure(all, Builtin(releaseDir), Wanted, func(m Module) ([]string, error) {
			b, err := readModule(filepath.Join(releaseDir, m.Path))
			if err != nil {
				return nil, err
			}
			return Depends(b)
		})
		if err != nil {
			return nil, err
		}
	}
	agentBytes, err := os.ReadFile(agent)
	if err != nil {
		return nil, fmt.Errorf("guest agent: %w", err)
	}
	// Uncompressed: it is read from the host's page cache, and the guest
	// kernel then skips inflating it, which under TCG took 0.2-0.3 s of a
	// 3 s boot (measured with bench/boottime, gzip -1 against none).
	cw := cpio.NewWriter(w)
	dir := func(name string) error {
		return cw.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeDir | 0o755})
	}
	file := func(name string, mode cpio.FileMode, body []byte) error {
		if err := cw.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeReg | mode, Size: int64(len(body))}); err != nil {
			return err
		}
		_, err := cw.Write(body)
		return err
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "newroot", "etc", "etc/banger", "lib", "lib/modules"} {
		if err := dir(d); err != nil {
			return nil, err
		}
	}
	// No /dev/console node: the cpio writer cannot record device numbers,
	// so the agent mounts devtmpfs first and opens the console itself.
	if err := file("init", 0o755, agentBytes); err != nil {
		return nil, err
	}
	var list strings.Builder
	for i, m := range mods {
		b, err := readModule(filepath.Join(releaseDir, m.Path))
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("lib/modules/%02d-%s.ko", i, m.Name)
		if err := file(name, 0o644, StripSignature(b)); err != nil {
			return nil, err
		}
		list.WriteString("/" + name + "\n")
	}
	if err := file(ModulesList, 0o644, []byte(list.String())); err != nil {
		return nil, err
	}
	if err := cw.Close(); err != nil {
		return nil, err
	}
	return mods, nil
}
