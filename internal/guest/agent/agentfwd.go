package agent

import (
	"io"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// forwardAgent serves the client's SSH agent to the session's commands,
// as sshd does for `ssh -A`: a socket only the session's account can use,
// named by SSH_AUTH_SOCK, each connection to it a channel back to the
// client. The client's keys never enter the guest; only signatures do.
func (ss *session) forwardAgent() bool {
	if ss.agentLn != nil {
		return true
	}
	acct := lookupAccount(ss.s.Passwd, ss.user)
	dir, err := os.MkdirTemp(ss.s.AgentDir, "banger-agent-")
	if err != nil {
		return false
	}
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		return false
	}
	// The directory is 0700: owned by the session's account, it is theirs.
	os.Chown(dir, int(acct.UID), int(acct.GID))
	os.Chown(sock, int(acct.UID), int(acct.GID))
	ss.agentLn, ss.agentDir = ln, dir
	ss.env = append(ss.env, "SSH_AUTH_SOCK="+sock)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go ss.proxyAgent(c)
		}
	}()
	return true
}

func (ss *session) proxyAgent(c net.Conn) {
	defer c.Close()
	ch, reqs, err := ss.conn.OpenChannel("auth-agent@openssh.com", nil)
	if err != nil {
		return
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	go func() {
		io.Copy(ch, c)
		ch.CloseWrite()
	}()
	io.Copy(c, ch)
}

func (ss *session) closeAgent() {
	if ss.agentLn != nil {
		ss.agentLn.Close()
		os.RemoveAll(ss.agentDir)
	}
}
