package vmm

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestProcessAliveAndKill(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal("start sleep (coreutils):", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p, err := ProcessOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Alive() {
		t.Fatal("a running process is not alive")
	}
	if (Process{PID: p.PID, StartTime: p.StartTime + 1}).Alive() {
		t.Fatal("a process with another start time (a reused PID) counts as alive")
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("Kill did not end the process")
	}
	if p.Alive() {
		t.Fatal("a killed process is alive")
	}
	if (Process{}).Alive() {
		t.Fatal("the zero Process is alive")
	}
	self, _ := ProcessOf(os.Getpid())
	if !self.Alive() {
		t.Fatal("this process is not alive")
	}
}

func TestUID(t *testing.T) {
	if uid, err := UID(os.Getpid()); err != nil || uid != os.Getuid() {
		t.Errorf("UID(self) = %d, %v; want %d", uid, err, os.Getuid())
	}
	if _, err := UID(-1); err == nil {
		t.Error("UID of no process succeeded")
	}
}
