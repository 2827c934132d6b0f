package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/banger-dev/banger/internal/format/initramfs"
	"github.com/banger-dev/banger/internal/kit/digest"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/wire/api"
)

// initrd returns banger's initramfs for kernel k, building it on first
// use. It is cached per kernel content and agent build: a new agent or a
// re-pulled kernel gets a new one. A kernel without modules needs none.
func (s *Service) initrd(ctx context.Context, k api.Kernel, p operation.Progress) (string, error) {
	if !k.Modules || k.Release == "" {
		return "", nil
	}
	if s.d.Agent == "" {
		return "", fmt.Errorf("kernel %s needs banger's initramfs, which holds the guest agent, and no banger-agent binary was found: install it next to banger or set agent_path in the config", k.Name)
	}
	agentSum, err := s.agentDigest()
	if err != nil {
		return "", fmt.Errorf("guest agent %s: %w", s.d.Agent, err)
	}
	key := fmt.Sprintf("%s-%s-%s%s", k.Name, short(k.Digest), short(agentSum), initramfs.Format)
	dir := filepath.Join(s.d.Layout.Cache(), "initramfs")
	path := filepath.Join(dir, key+".img")
	built, err := s.once(ctx, path, func() error {
		p.Stage("initramfs", "building banger's initramfs for kernel %s (%s)", k.Name, k.Release)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		tmp, err := os.CreateTemp(dir, ".build-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		mods, err := initramfs.Build(tmp, s.d.Agent, filepath.Join(k.Dir, "modules", k.Release))
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("build initramfs for kernel %s: %w", k.Name, err)
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return err
		}
		s.d.Log.Info("built initramfs", "kernel", k.Name, "modules", len(mods), "path", path)
		return nil
	})
	if err != nil {
		return "", err
	}
	if !built {
		return path, nil
	}
	// Older builds for this kernel are of no more use.
	old, _ := filepath.Glob(filepath.Join(dir, k.Name+"-*.img"))
	for _, o := range old {
		if o != path && strings.Count(strings.TrimPrefix(filepath.Base(o), k.Name+"-"), "-") == 1 { // not another kernel's whose name extends this one
			os.Remove(o)
		}
	}
	return path, nil
}

// once makes the file at path with build, unless it exists: under a lock
// per path, so that concurrent starts build it once. It says whether this
// call built it.
func (s *Service) once(ctx context.Context, path string, build func() error) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	unlock, err := s.boot.Lock(ctx, path, func() {})
	if err != nil {
		return false, err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return false, nil
	}
	return true, build()
}

// agentDigest is the agent binary's digest, hashed again only when the
// file changed: hashing 8 MiB on every start cost about 20 ms.
func (s *Service) agentDigest() (string, error) {
	st, err := os.Stat(s.d.Agent)
	if err != nil {
		return "", err
	}
	key := fmt.Sprintf("%s|%d|%d", s.d.Agent, st.Size(), st.ModTime().UnixNano())
	s.agentMu.Lock()
	defer s.agentMu.Unlock()
	if s.agentKey == key {
		return s.agentSum, nil
	}
	sum, err := digest.File(s.d.Agent)
	if err != nil {
		return "", err
	}
	s.agentKey, s.agentSum = key, sum
	return sum, nil
}

func short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}
