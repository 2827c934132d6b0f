package agent

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// account is a user's entry in the image's /etc/passwd.
type account struct {
	Name     string
	UID, GID uint32
	Home     string
	Shell    string
}

// Default PATHs, as OpenSSH's sshd sets them on Debian.
const (
	rootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	userPath = "/usr/local/bin:/usr/bin:/bin:/usr/games"
)

// lookupAccount finds name in the passwd file. Images without one (or
// without the user) get root with /bin/sh, so that any image is usable.
func lookupAccount(passwd, name string) account {
	fallback := account{Name: "root", Home: "/root", Shell: "/bin/sh"}
	f, err := os.Open(passwd)
	if err != nil {
		return fallback
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// name:password:uid:gid:gecos:home:shell
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 7 || fields[0] != name {
			continue
		}
		uid, err1 := strconv.ParseUint(fields[2], 10, 32)
		gid, err2 := strconv.ParseUint(fields[3], 10, 32)
		if err1 != nil || err2 != nil {
			return fallback
		}
		a := account{Name: name, UID: uint32(uid), GID: uint32(gid), Home: fields[5], Shell: fields[6]}
		if a.Home == "" {
			a.Home = "/"
		}
		return a
	}
	if name != "root" {
		return lookupAccount(passwd, "root")
	}
	return fallback
}

// shell is the account's login shell, or /bin/sh when the image lacks it
// (an image whose passwd names bash without shipping it).
func (a account) shell() string {
	if a.Shell != "" {
		if st, err := os.Stat(a.Shell); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return a.Shell
		}
	}
	return "/bin/sh"
}

// env is what sshd gives a session: USER, LOGNAME, HOME, SHELL, PATH.
func (a account) env() []string {
	path := userPath
	if a.UID == 0 {
		path = rootPath
	}
	return []string{"USER=" + a.Name, "LOGNAME=" + a.Name, "HOME=" + a.Home, "SHELL=" + a.shell(), "PATH=" + path}
}

// command builds what sshd runs: the login shell with "-c COMMAND" for an
// exec request, or as a login shell ("-bash") for an interactive one, in
// the home directory, as the account's user.
func (a account) command(line string, login bool) *exec.Cmd {
	sh := a.shell()
	var cmd *exec.Cmd
	if login {
		cmd = exec.Command(sh)
		cmd.Args[0] = "-" + filepath.Base(sh)
	} else {
		cmd = exec.Command(sh, "-c", line)
		cmd.Args[0] = filepath.Base(sh)
	}
	cmd.Dir = a.Home
	if st, err := os.Stat(cmd.Dir); err != nil || !st.IsDir() {
		cmd.Dir = "/"
	}
	if a.UID != uint32(os.Getuid()) {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: a.UID, Gid: a.GID}}
	}
	return cmd
}
