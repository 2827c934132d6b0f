// Package guestproto is what the host and the guest agent agree on: the
// kernel command line parameters the host sets, the console lines the
// agent prints, and the SSH requests it answers. Both sides import it, so
// neither can drift from the other.
package guestproto

import (
	"encoding/base64"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
)

// Console lines the agent prints.
const (
	// ReadyMarker starts the line the agent prints once SSH is served.
	ReadyMarker = "banger-agent: ready"
	// HostKeyPrefix starts the line giving the SSH host key's SHA256
	// fingerprint, which the host pins.
	HostKeyPrefix = "banger-agent: ssh host key "
)

// Kernel command line parameters.
const (
	ParamIP      = "banger.ip"       // ADDR/PREFIX of eth0
	ParamGateway = "banger.gw"       // default route
	ParamMTU     = "banger.mtu"      // eth0's MTU (the kernel's default without it)
	ParamSSHPort = "banger.ssh_port" // port the agent serves SSH on (22)
	ParamKeys    = "banger.keys"     // authorized keys, see EncodeKeys
	ParamWork    = "banger.work"     // block device mounted at /work
	ParamName    = "banger.name"     // hostname
	ParamDNS     = "banger.dns"      // the resolver /etc/resolv.conf names
	ParamInit    = "banger.init"     // the guest's init system: InitBanger (default) or InitSystemd
)

// Init systems a guest boots with.
const (
	// InitBanger: the agent is PID 1 and the whole init system; the
	// image needs nothing of its own.
	InitBanger = "banger"
	// InitSystemd: the agent hands PID 1 to the image's systemd and runs
	// under it as a service, banger-agent.service.
	InitSystemd = "systemd"
)

// CheckInit checks an init system's name; "" is the default, InitBanger.
func CheckInit(init string) error {
	switch init {
	case "", InitBanger, InitSystemd:
		return nil
	}
	return fmt.Errorf("init %q: want %q or %q", init, InitBanger, InitSystemd)
}

// InitFromReady is the init system a ready line says the guest runs
// ("banger-agent: ready: ..., init systemd (running)"); a line without
// one is from banger's own init.
func InitFromReady(console string) string {
	i := strings.LastIndex(console, ReadyMarker)
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(console[i:], "\n")
	if _, rest, ok := strings.Cut(line, ", init "); ok {
		if f := strings.Fields(rest); len(f) > 0 {
			return f[0]
		}
	}
	return InitBanger
}

// PowerOffRequest is the SSH global request asking the agent to power the
// guest off cleanly. It works whatever the image holds (no poweroff
// binary, no init system) and under any VMM.
const PowerOffRequest = "poweroff@banger"

// WorkTarSubsystem is the SSH subsystem that writes /work to the channel
// as a tar stream (files, directories and symlinks, with their modes).
const WorkTarSubsystem = "work-tar@banger"

// WorkDir is where the guest mounts its work disk.
const WorkDir = "/work"

// AuthSyncRequest is the SSH global request that lends the guest
// credentials: its payload is an AuthSync, JSON in an SSH string. Files
// land on a tmpfs, never on a disk; env is set in every later session.
const AuthSyncRequest = "authsync@banger"

// LentDir is the tmpfs that holds lent files in the guest.
const LentDir = "/run/banger/lent"

// HomePath checks a lent file's path, relative to the home directory and
// inside it, and returns it clean. The CLI (for its config), the daemon
// (for a request) and the agent (before it writes) each check with it.
func HomePath(rel string) (string, error) {
	c := path.Clean(rel)
	if rel == "" || path.IsAbs(rel) || c == "." || c == ".." || strings.HasPrefix(c, "../") || strings.ContainsRune(rel, 0) {
		return "", fmt.Errorf("lent file %q: not a path inside the home directory, such as .gitconfig", rel)
	}
	return c, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// EnvName says whether name can be a lent environment variable's name.
func EnvName(name string) bool { return envName.MatchString(name) }

// AuthSync is the payload of AuthSyncRequest.
type AuthSync struct {
	// User is the account whose home the files land under.
	User  string            `json:"user"`
	Files map[string][]byte `json:"files,omitempty"` // home-relative path -> content
	Env   map[string]string `json:"env,omitempty"`
	// Trust is a CA certificate (PEM) for the guest to trust: the
	// secrets proxy's, made for this VM. The agent writes TrustBundle
	// (the image's bundle and it) and puts it over the image's bundle.
	Trust []byte `json:"trust,omitempty"`
}

// ServicesFile lists, one a line, the programs the agent starts at every
// boot for an image without an init system (an image catalog's
// debootstrap source's services), each "NAME" or "NAME:SOCKET": the
// agent then says the guest is ready only once SOCKET accepts
// connections (up to ServiceWait), so that the first command finds the
// service up.
const ServicesFile = "/.banger/services"

// ServiceWait bounds how long the agent waits for a service's socket.
const ServiceWait = 90 * time.Second

var serviceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseService reads a service entry: a program's name (no path), and
// optionally ":" and the absolute path of the unix socket it serves.
func ParseService(s string) (name, socket string, err error) {
	name, socket, _ = strings.Cut(s, ":")
	if !serviceName.MatchString(name) {
		return "", "", fmt.Errorf("service %q: not a program name (letters, digits, '.', '_', '-')", s)
	}
	if socket != "" && (!path.IsAbs(socket) || path.Clean(socket) != socket || len(socket) > 107) {
		return "", "", fmt.Errorf("service %q: the socket is a clean absolute path", s)
	}
	return name, socket, nil
}

// ModulesLabel is the ext4 label of the disk that carries the kernel's
// modules: the agent finds it by label (its place among the disks
// varies) and mounts it at /lib/modules/<release>.
const ModulesLabel = "banger-modules"

// TrustDir holds, in the guest, the CA a VM's secrets proxy signs with
// (TrustCA) and the image's CA bundle with it added (TrustBundle).
const (
	TrustDir    = "/run/banger/trust"
	TrustCA     = TrustDir + "/proxy-ca.pem"
	TrustBundle = TrustDir + "/ca-bundle.pem"
)

// IdentityRequest is the SSH global request that makes a guest restored
// from a template a machine of its own, before anyone else reaches it:
// its payload is an Identity (JSON in an SSH string), its reply the new
// SSH host key's fingerprint (an SSH string), which the host pins.
const IdentityRequest = "identity@banger"

// Identity is the payload of IdentityRequest.
type Identity struct {
	Hostname string `json:"hostname"`
	// Keys replace the authorized keys given at boot (the image's own
	// /root/.ssh/authorized_keys stay).
	Keys []string `json:"keys"`
	// Entropy is mixed into the kernel's pool, which is then reseeded:
	// clones of one template must not share a random stream.
	Entropy []byte `json:"entropy"`
	// UnixNano is the host's clock: the template's stopped when it was
	// saved.
	UnixNano int64 `json:"unix_nano"`
	// MachineID replaces /etc/machine-id where the image has one.
	MachineID string `json:"machine_id"`
	// Work is the block device to mount at WorkDir ("" for none).
	Work string `json:"work,omitempty"`
}

// MinEntropy is the fewest bytes of entropy an Identity carries.
const MinEntropy = 32

// EncodeKeys packs authorized_keys lines into one command line word:
// kernel parameters cannot hold spaces.
func EncodeKeys(keys []string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(keys, "\n")))
}

// DecodeKeys is EncodeKeys' inverse.
func DecodeKeys(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ParamKeys, err)
	}
	return b, nil
}

// HostKeyFromConsole returns the last host key fingerprint printed on a
// console log, or "" if there is none yet.
func HostKeyFromConsole(console string) string {
	i := strings.LastIndex(console, HostKeyPrefix)
	if i < 0 {
		return ""
	}
	f := strings.Fields(console[i+len(HostKeyPrefix):])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
