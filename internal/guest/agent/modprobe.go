package agent

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Where the agent keeps, on the guest's /run, the modules disk's mount
// and the names it answers to as a program.
const (
	modulesMount = "/run/banger/modules"
	helperBin    = "/run/banger/bin"
)

// modIndex is what modprobe needs of a kernel release's modules: each
// module's file and dependencies (modules.dep), the aliases that name
// modules (modules.alias: "fs-overlay", "char-major-10-229"), and what is
// built in (modules.builtin).
type modIndex struct {
	dir     string
	files   map[string]string   // module name -> path relative to dir
	deps    map[string][]string // path -> the paths it needs
	aliases [][2]string         // pattern, module name
	builtin map[string]bool
}

// modName is a module's name as the kernel spells it, from a file or a
// request: no directory, no .ko(.xz), '-' as '_'.
func modName(s string) string {
	s = path.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_")
}

// readModIndex reads the indexes depmod wrote in dir.
func readModIndex(dir string) (*modIndex, error) {
	idx := &modIndex{dir: dir, files: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	err := eachLine(filepath.Join(dir, "modules.dep"), func(l string) {
		file, deps, ok := strings.Cut(l, ":")
		if !ok {
			return
		}
		idx.files[modName(file)] = file
		idx.deps[file] = strings.Fields(deps)
	})
	if err != nil {
		return nil, fmt.Errorf("no modules index for this kernel (%w)", err)
	}
	eachLine(filepath.Join(dir, "modules.alias"), func(l string) {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "alias" {
			idx.aliases = append(idx.aliases, [2]string{f[1], modName(f[2])})
		}
	})
	eachLine(filepath.Join(dir, "modules.builtin"), func(l string) { idx.builtin[modName(l)] = true })
	return idx, nil
}

func eachLine(p string, f func(string)) error {
	fh, err := os.Open(p)
	if err != nil {
		return err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			f(l)
		}
	}
	return sc.Err()
}

// resolve names the module files to load for name, in order (what each
// needs before it): a module's own name, else every module an alias
// matches. None and no error: built in.
func (idx *modIndex) resolve(name string) ([]string, error) {
	n := modName(name)
	if idx.builtin[n] {
		return nil, nil
	}
	var mods []string
	if _, ok := idx.files[n]; ok {
		mods = []string{n}
	} else {
		for _, a := range idx.aliases {
			if ok, _ := path.Match(a[0], name); ok {
				if idx.builtin[a[1]] {
					return nil, nil
				}
				if _, known := idx.files[a[1]]; known {
					mods = append(mods, a[1])
				}
			}
		}
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("module %s not found in %s", name, idx.dir)
	}
	var order []string
	seen := map[string]bool{}
	var visit func(file string, depth int)
	visit = func(file string, depth int) {
		if seen[file] || depth > 64 {
			return
		}
		seen[file] = true
		for _, d := range idx.deps[file] {
			visit(d, depth+1)
		}
		order = append(order, file)
	}
	for _, m := range mods {
		visit(idx.files[m], 0)
	}
	return order, nil
}
