package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest/guestproto"
)

// lend places lent files on a tmpfs and links them from the account's
// home, so that their content never reaches a disk: a link on the root
// disk names the file, the file itself lives in memory and is gone at
// power-off.
func lend(a guestproto.AuthSync, passwd string) error {
	user := a.User
	if user == "" {
		user = "root"
	}
	acct := lookupAccount(passwd, user)
	if len(a.Trust) > 0 {
		if err := installTrust(a.Trust); err != nil {
			return err
		}
	}
	if len(a.Files) == 0 {
		return nil
	}
	if err := lentTmpfs(); err != nil {
		return err
	}
	if err := os.Chown(guestproto.LentDir, int(acct.UID), int(acct.GID)); err != nil {
		return err
	}
	for rel, data := range a.Files {
		clean, err := guestproto.HomePath(rel)
		if err != nil {
			return err
		}
		held := filepath.Join(guestproto.LentDir, strings.ReplaceAll(clean, "/", "%"))
		tmp := held + ".new"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return fmt.Errorf("lend %s: %w", clean, err)
		}
		if err := os.Chown(tmp, int(acct.UID), int(acct.GID)); err != nil {
			return err
		}
		if err := os.Rename(tmp, held); err != nil {
			return err
		}
		dst := filepath.Join(acct.Home, clean)
		if err := mkdirOwned(acct, filepath.Dir(dst)); err != nil {
			return fmt.Errorf("lend %s: %w", clean, err)
		}
		if fi, err := os.Lstat(dst); err == nil {
			if fi.Mode()&os.ModeSymlink == 0 {
				return fmt.Errorf("lend ~/%s: the guest has its own file there; not replacing it", clean)
			}
			os.Remove(dst)
		}
		if err := os.Symlink(held, dst); err != nil {
			return fmt.Errorf("lend %s: %w", clean, err)
		}
		unix.Lchown(dst, int(acct.UID), int(acct.GID))
	}
	return nil
}

// lentTmpfs mounts the tmpfs for lent files once.
func lentTmpfs() error {
	if err := os.MkdirAll(guestproto.LentDir, 0o700); err != nil {
		return err
	}
	var dir, parent unix.Stat_t
	if err := unix.Stat(guestproto.LentDir, &dir); err != nil {
		return err
	}
	if err := unix.Stat(filepath.Dir(guestproto.LentDir), &parent); err != nil {
		return err
	}
	if dir.Dev != parent.Dev {
		return nil
	}
	if err := unix.Mount("tmpfs", guestproto.LentDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=16m"); err != nil {
		return fmt.Errorf("mount a tmpfs for lent files: %w", err)
	}
	return nil
}

// mkdirOwned makes dir and its missing parents, owned by the account.
func mkdirOwned(acct account, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirOwned(acct, filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	return os.Chown(dir, int(acct.UID), int(acct.GID))
}
