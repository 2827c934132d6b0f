package sandbox

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// allowed are the system calls a sandboxed helper may make: the Go
// runtime's (memory, threads, signals, timers, its poller) and reads and
// writes of descriptors it already holds. Everything else fails with
// EPERM: open, socket, connect, exec, ptrace, mount, unshare, ioctl...
var allowed = []uint32{
	unix.SYS_READ, unix.SYS_WRITE, unix.SYS_READV, unix.SYS_WRITEV, unix.SYS_PREAD64,
	unix.SYS_CLOSE, unix.SYS_FSTAT, unix.SYS_NEWFSTATAT, unix.SYS_LSEEK, unix.SYS_FCNTL,
	unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MPROTECT, unix.SYS_MADVISE, unix.SYS_BRK, unix.SYS_MINCORE,
	unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_SIGALTSTACK,
	unix.SYS_FUTEX, unix.SYS_SCHED_YIELD, unix.SYS_SCHED_GETAFFINITY, unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP,
	unix.SYS_CLOCK_GETTIME, unix.SYS_GETTIMEOFDAY,
	unix.SYS_GETPID, unix.SYS_GETTID, unix.SYS_TGKILL, unix.SYS_TKILL,
	unix.SYS_EXIT, unix.SYS_EXIT_GROUP, unix.SYS_RESTART_SYSCALL,
	unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_PWAIT, unix.SYS_EPOLL_WAIT, unix.SYS_EVENTFD2, unix.SYS_PIPE2,
	unix.SYS_GETRANDOM, unix.SYS_SET_ROBUST_LIST, unix.SYS_RSEQ, unix.SYS_GETRLIMIT, unix.SYS_PRLIMIT64,
	unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID,
}

const (
	auditArchX8664 = 0xc000003e
	retKill        = 0x80000000 // SECCOMP_RET_KILL_PROCESS
	retErrno       = 0x00050000 // SECCOMP_RET_ERRNO | errno
	retAllow       = 0x7fff0000
	// Thread creation is allowed, namespace creation through clone is
	// not: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
	cloneNamespaces = 0x7E020000

	bpfLdAbsW = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeq    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJset   = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	bpfRet    = unix.BPF_RET | unix.BPF_K
)

// filter is the seccomp program: the wrong architecture is killed, clone
// with a namespace flag refused, allowed calls pass, the rest get EPERM.
func filter() []unix.SockFilter {
	eperm := uint32(retErrno | unix.EPERM)
	p := []unix.SockFilter{
		{Code: bpfLdAbsW, K: 4}, // arch
		{Code: bpfJeq, Jt: 1, K: auditArchX8664},
		{Code: bpfRet, K: retKill},
		{Code: bpfLdAbsW, K: 0}, // syscall number
		// clone3 passes its flags in memory, where a filter cannot look:
		// ENOSYS makes a C library (a cgo build's pthread_create) fall
		// back to clone, whose flags the next rule reads. EPERM would not.
		{Code: bpfJeq, Jf: 1, K: unix.SYS_CLONE3},
		{Code: bpfRet, K: uint32(retErrno | unix.ENOSYS)},
		{Code: bpfJeq, Jf: 4, K: unix.SYS_CLONE},
		{Code: bpfLdAbsW, K: 16}, // clone's flags (low word)
		{Code: bpfJset, Jf: 1, K: cloneNamespaces},
		{Code: bpfRet, K: eperm},
		{Code: bpfRet, K: retAllow},
	}
	n := len(allowed)
	for i, nr := range allowed {
		p = append(p, unix.SockFilter{Code: bpfJeq, Jt: uint8(n - i), K: nr})
	}
	return append(p, unix.SockFilter{Code: bpfRet, K: eperm}, unix.SockFilter{Code: bpfRet, K: retAllow})
}

func installFilter() error {
	f := filter()
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	// TSYNC: the runtime's threads already run, and each must be filtered.
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	return nil
}
