// Package api holds the wire types shared by the daemon and its clients.
//
// It depends on the standard library only, so that any client (the CLI, a
// test, a third-party tool) can import it without pulling in the daemon.
// The HTTP surface is described in docs/openapi.yaml; a test keeps the two
// in step.
package api

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Prefix is the versioned root of every route.
const Prefix = "/v1"

// Error is the body of every failed request, and the payload of an "error"
// event at the end of a stream. Code is stable and meant for programs;
// Message is for people.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Event types in a newline-delimited JSON stream.
const (
	EventOperation = "operation" // first event: the operation's ID
	EventProgress  = "progress"  // a stage line, or bytes done of total
	EventResult    = "result"    // last event on success
	EventError     = "error"     // last event on failure
)

// Event is one line of a streamed long operation.
type Event struct {
	Type      string          `json:"type"`
	Operation string          `json:"operation,omitempty"`
	Stage     string          `json:"stage,omitempty"`
	Message   string          `json:"message,omitempty"`
	Done      int64           `json:"done,omitempty"`
	Total     int64           `json:"total,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *Error          `json:"error,omitempty"`
}

// Operation describes long work in progress in the daemon.
type Operation struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Target    string    `json:"target"`
	Owner     uint32    `json:"owner"`
	Stage     string    `json:"stage"`
	StartedAt time.Time `json:"started_at"`
}

// VersionInfo identifies a build of banger.
type VersionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	GoVersion string `json:"go_version"`
}

// Status is the daemon's answer to GET /v1/status.
type Status struct {
	Daemon     VersionInfo `json:"daemon"`
	APIVersion string      `json:"api_version"`
	PID        int         `json:"pid"`
	StateDir   string      `json:"state_dir"`
	StartedAt  time.Time   `json:"started_at"`
	Kernels    int         `json:"kernels"`
	Images     int         `json:"images"`
	VMs        int         `json:"vms"`
	Operations int         `json:"operations"`
	// Accel is the accelerator VMs get.
	Accel Accel `json:"accel"`
	// Network is the user-mode network guests get and what they reach:
	// "passt: guests reach the outside network, not this host's loopback".
	Network string `json:"network"`
	// Bridge says whether bridge mode works here: "banger0, 10.213.0.0/24"
	// or "unavailable: why"; DefaultNetwork is a VM's mode without --net.
	Bridge         string `json:"bridge"`
	DefaultNetwork string `json:"default_network"`
	// Guard says whether guests are kept off this host (its addresses,
	// link-local, its LAN): "on: ..." or "off: why".
	Guard string `json:"guard"`
	// MaxSeedBytes bounds a work seed (max_seed_bytes), so that a client
	// can refuse an oversized one before sending it.
	MaxSeedBytes int64 `json:"max_seed_bytes"`
}

// Accel is the accelerator VMs get on this host, and how it was chosen.
type Accel struct {
	// Summary is what people read: "kvm", "tcg (no /dev/kvm)", "tcg (kvm
	// present but broken: ...)", or "probing".
	Summary string `json:"summary"`
	// Name is "kvm" or "tcg"; empty while the probe runs.
	Name string `json:"name,omitempty"`
	// CPU is the VMM's CPU model.
	CPU    string `json:"cpu,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Mode is the configured choice: auto, kvm or tcg.
	Mode string `json:"mode"`
	// KVM is what was found: works, absent, unusable, broken, not probed.
	KVM string `json:"kvm,omitempty"`
	// Probes are the probe guest's runs, one per CPU model tried.
	Probes    []AccelProbe `json:"probes,omitempty"`
	ProbedAt  time.Time    `json:"probed_at,omitzero"`
	ProbeTook string       `json:"probe_took,omitempty"`
	// Cached: taken from an earlier probe in this host boot, same VMM.
	Cached bool `json:"cached,omitempty"`
	// Error is set when the configured mode cannot run VMs here
	// (accel = kvm where KVM does not work).
	Error string `json:"error,omitempty"`
}

// AccelProbe is one run of the probe guest under KVM.
type AccelProbe struct {
	CPU    string `json:"cpu"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// Kernel source kinds.
const (
	SourceURL = "url" // a vmlinux or bzImage by URL, with sha256
	SourceDeb = "deb" // a kernel .deb by URL, with sha256
	SourceApt = "apt" // a package fetched through the host's apt sources
	SourceOCI = "oci" // an OCI image holding /boot/vmlinux and /lib/modules
)

// KernelSource is one place a catalog kernel can come from.
type KernelSource struct {
	Kind    string `json:"kind"`
	URL     string `json:"url,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Package string `json:"package,omitempty"`
	Ref     string `json:"ref,omitempty"`
}

// KernelCatalogEntry is one kernel the catalogs know how to fetch.
type KernelCatalogEntry struct {
	Name        string         `json:"name"`
	Version     string         `json:"version"`
	Arch        string         `json:"arch"`
	Description string         `json:"description,omitempty"`
	Sources     []KernelSource `json:"sources"`
	// Catalog says where the entry came from: "embedded" or a configured
	// path or URL. Local says whether a kernel of that name is published.
	Catalog string `json:"catalog,omitempty"`
	Local   bool   `json:"local"`
}

// KernelFile is one published file of a kernel, or its modules directory
// (a Name ending in "/", with the Count of files under it and no SHA256).
type KernelFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	Count  int    `json:"count,omitempty"`
}

// Kernel is a published kernel.
type Kernel struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	// Source is how it was obtained: "deb https://...", "apt linux-image-...",
	// "oci ref", "import /path".
	SourceKind string `json:"source_kind"`
	Source     string `json:"source"`
	// Digest is the sha256 of what was fetched (the .deb, the kernel file or
	// the OCI manifest), recorded at pull time.
	Digest string `json:"digest"`
	// Release is the kernel's own release string (uname -r), as named by its
	// modules directory, when known.
	Release   string       `json:"release,omitempty"`
	Modules   bool         `json:"modules"`
	Files     []KernelFile `json:"files"`
	Size      int64        `json:"size"`
	Dir       string       `json:"dir"`
	CreatedAt time.Time    `json:"created_at"`
	// Owner is the uid of the caller that pulled or imported it. Shared
	// ones (every pulled kernel, an imported one once shared) are seen
	// by every caller; others only by their owner and root.
	Owner  uint32 `json:"owner"`
	Shared bool   `json:"shared"`
}

// KernelPullRequest asks for a catalog kernel to be published.
type KernelPullRequest struct {
	Name string `json:"name"`
}

// KernelImportRequest publishes a kernel from files the client sent.
// Either Deb, or Kernel (with optional Initrd and Modules) is set.
//
// The files are uploads (POST /v1/uploads), named by ID: the daemon opens
// no path a client names. Source says where they came from, for people.
type KernelImportRequest struct {
	Name    string `json:"name"`
	Deb     string `json:"deb,omitempty"`
	Kernel  string `json:"kernel,omitempty"`
	Initrd  string `json:"initrd,omitempty"`
	Modules string `json:"modules,omitempty"` // a tree upload
	Version string `json:"version,omitempty"`
	Source  string `json:"source,omitempty"`
	// Shared lets every caller see and boot the kernel; without it only
	// its owner (and root) do.
	Shared bool `json:"shared,omitempty"`
}

// Upload is a file or directory tree a client sent the daemon, waiting
// for the request that names it.
type Upload struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"` // "file" or "tree"
	Bytes  int64  `json:"bytes"`
	Digest string `json:"digest"` // sha256 of the body as sent
}

// Kinds of upload body.
const (
	UploadFile = "file" // the body is the file
	UploadTree = "tree" // the body is a tar stream of a directory
	// UploadSparse is a file sent as its data extents (see
	// internal/format/sparse), so that a disk image's holes cross the
	// socket as nothing. It is kept as a file.
	UploadSparse = "sparse"
)

// Image source kinds.
const (
	SourceBundle      = "bundle"      // a tarball with manifest.json and an ext4 rootfs
	SourceDebootstrap = "debootstrap" // built locally with mmdebstrap from the host's package sources
	SourceRegister    = "register"    // an existing ext4 file adopted by `image register`
	SourcePromote     = "promote"     // a stopped VM's root disk, by `image promote`
)

// ImageSource is one place a catalog image can come from.
type ImageSource struct {
	Kind string `json:"kind"` // oci, bundle, debootstrap
	// oci
	Ref string `json:"ref,omitempty"`
	// bundle
	URL    string `json:"url,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// debootstrap
	Suite    string   `json:"suite,omitempty"`
	Variant  string   `json:"variant,omitempty"`
	Packages []string `json:"packages,omitempty"`
	// Services are programs of the image (by name, found on root's PATH)
	// that banger's agent starts at every boot, for an image without an
	// init system of its own: "dockerd", or "dockerd:/run/docker.sock"
	// to have the guest ready only once that socket answers. Their
	// output goes to /var/log/NAME.log in the guest.
	Services []string `json:"services,omitempty"`
}

// ImageCatalogEntry is one image the catalogs know how to fetch.
type ImageCatalogEntry struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	Kernel      string        `json:"kernel"`
	Sources     []ImageSource `json:"sources"`
	Catalog     string        `json:"catalog,omitempty"`
	Local       bool          `json:"local"`
}

// Image is a published image: an ext4 root disk ready to boot.
type Image struct {
	Name       string `json:"name"`
	SourceKind string `json:"source_kind"`
	Source     string `json:"source"`
	// Digest is the manifest digest (oci) or the sha256 of what was
	// fetched or adopted.
	Digest string `json:"digest"`
	Kernel string `json:"kernel"`
	// Size is the disk's file system size: what a VM's root disk gets
	// when --disk does not say otherwise.
	Size int64 `json:"size"`
	// Stored is what the image's files take on the host (they are sparse).
	Stored    int64     `json:"stored"`
	Layers    int       `json:"layers"`
	Files     int       `json:"files"`
	Disk      string    `json:"disk"`
	CreatedAt time.Time `json:"created_at"`
	// Owner is the uid of the caller that pulled or made it. Shared ones
	// (every pulled image, a registered or promoted one once shared) are
	// seen by every caller; others only by their owner and root.
	Owner  uint32 `json:"owner"`
	Shared bool   `json:"shared"`
}

// ImagePullRequest asks for an image: Name is a catalog name, or an OCI
// reference (then As names the local image, derived from the reference
// when empty).
type ImagePullRequest struct {
	Name   string `json:"name"`
	As     string `json:"as,omitempty"`
	Kernel string `json:"kernel,omitempty"`
}

// ImageRegisterRequest adopts an existing ext4 file as an image.
//
// Rootfs is an upload ID (POST /v1/uploads); Source says where the file
// came from, for people.
type ImageRegisterRequest struct {
	Name   string `json:"name"`
	Rootfs string `json:"rootfs"`
	Kernel string `json:"kernel,omitempty"`
	Source string `json:"source,omitempty"`
	// Shared lets every caller see and boot the image; without it only
	// its owner (and root) do.
	Shared bool `json:"shared,omitempty"`
}

// ImagePromoteRequest makes an image of a stopped VM's root disk.
type ImagePromoteRequest struct {
	Name string `json:"name"`
	// VM is the stopped VM whose root disk becomes the image.
	VM string `json:"vm"`
	// Shared lets every caller see and boot the image; without it only
	// its owner (and root) do.
	Shared bool `json:"shared,omitempty"`
}

// Dependent is a VM or a snapshot that uses an image or a kernel, with
// its owner: removing the image or kernel is refused while one exists,
// and the refusal names only the caller's own.
type Dependent struct {
	Kind  string `json:"kind"` // "vm" or "snapshot"
	Name  string `json:"name"`
	Owner uint32 `json:"owner"`
}

// VM states. A VM is stopped, starting (its VMM runs, the guest is not
// ready yet), running (the guest agent answered) or stopping.
const (
	VMStopped  = "stopped"
	VMStarting = "starting"
	VMRunning  = "running"
	VMStopping = "stopping"
)

// PortForward publishes a guest port on a host address: 127.0.0.1 unless
// HostIP says otherwise.
type PortForward struct {
	HostIP    string `json:"host_ip,omitempty"`
	HostPort  int    `json:"host_port"`
	GuestPort int    `json:"guest_port"`
	// Proto is "udp" for datagrams; "" is TCP.
	Proto string `json:"proto,omitempty"`
}

// UDP says whether the forward carries datagrams.
func (f PortForward) UDP() bool { return f.Proto == "udp" }

// Addr is the host address the forward listens on.
func (f PortForward) Addr() string {
	if f.HostIP == "" {
		return "127.0.0.1"
	}
	return f.HostIP
}

// VM is one virtual machine.
type VM struct {
	Name string `json:"name"`
	// Owner is the uid of the caller that made the VM: only it and root
	// see it.
	Owner    uint32 `json:"owner"`
	State    string `json:"state"`
	Image    string `json:"image"`
	Kernel   string `json:"kernel"`
	CPUs     int    `json:"cpus"`
	MemoryMB int    `json:"memory_mib"`
	// DiskBytes is the size of the root disk the guest sees.
	DiskBytes int64 `json:"disk_bytes"`
	// Driver is the VMM driver ("qemu").
	Driver string `json:"driver"`
	// Accel is the accelerator the VM last booted with, and why: "kvm",
	// or "tcg (kvm present but broken: ...)".
	Accel string `json:"accel,omitempty"`
	// Network is how the guest is connected: NetUser, NetBridge or
	// NetNone ("" in records older than networks is NetUser).
	Network string `json:"network"`
	// IP is a bridge-mode guest's address on banger's bridge.
	IP string `json:"ip,omitempty"`
	// Egress is a bridge-mode guest's egress policy ("open", "deny",
	// "allow=HOST,...", "learn").
	Egress string `json:"egress,omitempty"`
	// SSHPort is the 127.0.0.1 port forwarded to the guest's SSH server
	// (0 for a bridge-mode guest, reached at IP); HostKey its host key's
	// SHA256 fingerprint, for clients to pin.
	SSHPort   int           `json:"ssh_port"`
	HostKey   string        `json:"host_key,omitempty"`
	Ports     []PortForward `json:"ports"`
	PID       int           `json:"pid,omitempty"`
	Dir       string        `json:"dir"`
	Console   string        `json:"console"`
	CreatedAt time.Time     `json:"created_at"`
	StartedAt time.Time     `json:"started_at,omitzero"`
	// Work is the VM's work disk, mounted at /work in the guest; nil
	// when it was created without one.
	Work *Work `json:"work,omitempty"`
	// Lent names what the last auth sync lent the running guest: file
	// paths and environment variable names, never their values.
	Lent []string `json:"lent,omitempty"`
	// Secrets are the secrets the VM was given (names, hosts and what
	// was done with them, never values), kept until it is removed.
	Secrets []VMSecret `json:"secrets,omitempty"`
	// MadeBy is the tool that made the VM, when not the CLI by hand.
	MadeBy *MadeBy `json:"made_by,omitempty"`
	// Template is the template the VM resumed from instead of booting
	// ("" for a VM that booted).
	Template string `json:"template,omitempty"`
	// Snapshot is the snapshot the VM was forked from.
	Snapshot string `json:"snapshot,omitempty"`
	// Init is the guest's init system: "systemd" for the image's own,
	// "" for banger's agent as PID 1.
	Init string `json:"init,omitempty"`
}

// Network modes.
const (
	// NetUser: the VMM's user-mode network; SSH and published ports
	// through forwards on the host's addresses. No root needed.
	NetUser = "user"
	// NetBridge: a tap on banger's bridge, an address of its own, NAT
	// out, published ports by DNAT, an egress policy.
	NetBridge = "bridge"
	// NetNone: the guest reaches nothing; only the daemon's SSH forward
	// reaches it.
	NetNone = "none"
)

// SSHAddr is where the guest's SSH server answers from the host.
func (v VM) SSHAddr() string {
	if v.IP != "" && v.Network == NetBridge {
		return net.JoinHostPort(v.IP, "22")
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(v.SSHPort))
}

// Resolved is one name a bridge-mode VM looked up through banger's DNS
// forwarder and one address it resolved to ("" when none).
type Resolved struct {
	Name  string    `json:"name"`
	Addr  string    `json:"addr"`
	Count int       `json:"count"`
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// Egress is what `vm egress` shows.
type Egress struct {
	VM       string     `json:"vm"`
	Policy   string     `json:"policy"`
	Resolved []Resolved `json:"resolved"`
}

// MadeBy records which tool made a VM and for which checkout: `banger mcp`
// sees only the VMs it made for the checkout it serves. It is a scope for
// agents, not a permission: any caller of the daemon may reach any VM.
type MadeBy struct {
	// Tool is "mcp" for `banger mcp`.
	Tool string `json:"tool"`
	// Checkout is the absolute path of the directory the tool served.
	Checkout string `json:"checkout,omitempty"`
}

// Work describes a VM's work disk and what it was seeded from.
type Work struct {
	// Source is the host directory that was seeded, as the client named it.
	Source string `json:"source"`
	// Base is the commit HEAD pointed at when a git checkout was seeded;
	// empty for a plain directory.
	Base string `json:"base,omitempty"`
	// Branch is the branch checked out then, if any.
	Branch string `json:"branch,omitempty"`
	// SeedCommit is a commit of the working tree as it was seeded (the
	// host's uncommitted changes on Base), which the seed carried into
	// the guest's repository: vm diff --since-seed diffs against it.
	SeedCommit string `json:"seed_commit,omitempty"`
	// Fingerprint is the sha256 of the seed's tar stream: two seeds of
	// the same files and modes have the same one.
	Fingerprint string `json:"fingerprint"`
	Files       int    `json:"files"`
	// Bytes is the seed's file content; DiskBytes the work disk's size.
	Bytes     int64     `json:"bytes"`
	DiskBytes int64     `json:"disk_bytes"`
	SeededAt  time.Time `json:"seeded_at"`
	// PulledAt and PulledBranch record the last `vm pull`.
	PulledAt     time.Time `json:"pulled_at,omitzero"`
	PulledBranch string    `json:"pulled_branch,omitempty"`
	PulledCommit string    `json:"pulled_commit,omitempty"`
}

// Seed is a work disk built from a client's tar stream and held by the
// daemon until a VM create claims it by ID (or it expires).
type Seed struct {
	ID   string `json:"id"`
	Work Work   `json:"work"`
}

// WorkPulled records that a VM's work was brought back to the host.
type WorkPulled struct {
	Branch string `json:"branch"`
	Commit string `json:"commit"`
}

// AuthSync lends a running guest credentials: files land under the guest
// user's home on a tmpfs (mode 0600), env is set in every later session.
// Nothing of it is stored by the daemon or written to a disk.
type AuthSync struct {
	Files []LentFile        `json:"files,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
}

// SecretsRequest gives a running VM secrets: the guest gets a
// placeholder for each, and the daemon's proxy puts the value in
// requests to its hosts. The daemon holds values in memory only, for the
// VM's current boot.
type SecretsRequest struct {
	Secrets []SecretGrant `json:"secrets"`
}

// SecretGrant is one secret: its value (read by the CLI with the
// caller's rights), the hosts it may be sent to (exact names, or
// "*.example.com"), and where the guest finds its placeholder: a
// variable in every session (Env) and/or a file under the home (File).
type SecretGrant struct {
	Name  string   `json:"name"`
	Value string   `json:"value"`
	Hosts []string `json:"hosts"`
	Env   string   `json:"env,omitempty"`
	File  string   `json:"file,omitempty"`
}

// VMSecret is what `vm show` says of a secret a VM was given.
type VMSecret struct {
	Name  string   `json:"name"`
	Hosts []string `json:"hosts"`
	Env   string   `json:"env,omitempty"`
	File  string   `json:"file,omitempty"`
	// Held says the daemon holds its value now (the VM runs, and this
	// daemon was given it since it started).
	Held    bool      `json:"held"`
	Uses    int64     `json:"uses"`
	LastUse time.Time `json:"last_use,omitzero"`
	// Attempts are its placeholder sent where the value may not go.
	Attempts []SecretAttempt `json:"attempts,omitempty"`
}

// SecretAttempt is a placeholder sent where its value may not go.
type SecretAttempt struct {
	Host  string    `json:"host"`
	Why   string    `json:"why"`
	Count int64     `json:"count"`
	Last  time.Time `json:"last"`
}

// LentFile is one credential file, at Path relative to the home directory.
type LentFile struct {
	Path string `json:"path"`
	Data []byte `json:"data"`
}

// VMCreateRequest creates a VM; with Start it also boots it and waits
// for its agent, and a VM that fails to start is removed again, so that
// create-and-start either gives a running VM or leaves nothing.
type VMCreateRequest struct {
	// Name is generated when empty.
	Name string `json:"name,omitempty"`
	// Image defaults to default_image_name; it is pulled when not local.
	Image string `json:"image,omitempty"`
	// Kernel defaults to the image's kernel.
	Kernel   string `json:"kernel,omitempty"`
	CPUs     int    `json:"cpus,omitempty"`
	MemoryMB int    `json:"memory_mib,omitempty"`
	// Disk is the root disk's size ("20G"); empty means the daemon's
	// default_disk, or the image's size when that is larger. It must hold
	// the image's files.
	Disk string `json:"disk,omitempty"`
	// Ports are "[HOSTIP:]HOST:GUEST[/udp]" forwards, on 127.0.0.1
	// unless HOSTIP says otherwise; TCP unless /udp.
	Ports []string `json:"ports,omitempty"`
	// Network is NetUser, NetBridge or NetNone; "" is the daemon's
	// default_network.
	Network string `json:"network,omitempty"`
	// Egress is a bridge-mode VM's egress policy: "open" (the default),
	// "deny", "allow=HOST[,HOST...]", "learn", or "from=VM" (allow what
	// VM's lookups resolved).
	Egress string `json:"egress,omitempty"`
	// AuthorizedKeys are authorized_keys lines accepted for root, on top
	// of the ones baked into the image.
	AuthorizedKeys []string `json:"authorized_keys,omitempty"`
	Start          bool     `json:"start,omitempty"`
	// ReadyTimeout bounds the wait for the guest agent ("90s"); the
	// daemon's ready_timeout when empty.
	ReadyTimeout string `json:"ready_timeout,omitempty"`
	// Seed is the ID of a seed uploaded to POST /v1/seeds: it becomes the
	// VM's work disk, mounted at /work.
	Seed string `json:"seed,omitempty"`
	// Snapshot makes the VM a fork of a snapshot: its image, kernel,
	// size, disks and work come from it, and it resumes where the
	// snapshot's VM was, with an identity of its own.
	Snapshot string `json:"snapshot,omitempty"`
	// MadeBy records the tool that asks, such as `banger mcp`.
	MadeBy *MadeBy `json:"made_by,omitempty"`
	// Init is the guest's init system: "banger" (the default: banger's
	// agent is PID 1, the image needs no init of its own) or "systemd"
	// (the image's systemd is PID 1 and the agent one of its services).
	Init string `json:"init,omitempty"`
}

// VMStartRequest starts a stopped VM.
type VMStartRequest struct {
	ReadyTimeout string `json:"ready_timeout,omitempty"`
}

// VMStopRequest stops a VM: the guest is asked to power off, and the VMM
// is killed if it has not within Timeout ("30s" when empty).
type VMStopRequest struct {
	Timeout string `json:"timeout,omitempty"`
}

// Template is a saved guest that VMs of its kind resume from instead of
// booting (GET /v1/templates).
type Template struct {
	ID        string `json:"id"`
	Image     string `json:"image"`
	Kernel    string `json:"kernel"`
	CPUs      int    `json:"cpus"`
	MemoryMB  int    `json:"memory_mib"`
	DiskBytes int64  `json:"disk_bytes"`
	// VMM and Agent are the builds it was made with: a template made by
	// others is made again at the next start of its kind.
	VMM   string `json:"vmm"`
	Agent string `json:"agent"`
	// Bytes is what its files take on disk.
	Bytes     int64     `json:"bytes"`
	CreatedAt time.Time `json:"created_at"`
	// BootMillis is how long its boot took: what each resume saves.
	BootMillis int64 `json:"boot_ms"`
	// UsedBy names the VMs resumed from it that still exist (they keep
	// their own link to its disk: removing it does not harm them).
	UsedBy []string `json:"used_by"`
	// Problem says why it will not be resumed from ("" if it will).
	Problem string `json:"problem,omitempty"`
}

// Snapshot is a running VM saved whole, RAM included, that new VMs fork
// from (GET /v1/snapshots).
type Snapshot struct {
	Name string `json:"name"`
	// Owner is the uid of the caller that took it.
	Owner     uint32    `json:"owner"`
	VM        string    `json:"vm"`
	Image     string    `json:"image"`
	Kernel    string    `json:"kernel"`
	CPUs      int       `json:"cpus"`
	MemoryMB  int       `json:"memory_mib"`
	Bytes     int64     `json:"bytes"`
	CreatedAt time.Time `json:"created_at"`
	// PausedMillis is how long taking it paused its VM.
	PausedMillis int64 `json:"paused_ms"`
	// UsedBy names the VMs forked from it that still exist.
	UsedBy []string `json:"used_by"`
	// Lent names the lent credentials (files, variables) its saved memory
	// holds, taken with WithLent: names, never values.
	Lent    []string `json:"lent,omitempty"`
	Problem string   `json:"problem,omitempty"`
}

// SnapshotRequest is the body of POST /v1/vms/{name}/snapshot.
type SnapshotRequest struct {
	// Name is the snapshot's; generated from the VM's when empty.
	Name string `json:"name,omitempty"`
	// WithLent takes a VM that holds lent credentials: they are in its
	// memory, and so in the snapshot's files. Refused without it.
	WithLent bool `json:"with_lent,omitempty"`
}

// ForkRequest is the body of POST /v1/vms/{name}/fork.
type ForkRequest struct {
	// Name is the new VM's; generated when empty.
	Name string `json:"name,omitempty"`
	// Keys are authorized keys for the new VM (the caller's).
	Keys []string `json:"keys,omitempty"`
	// WithLent forks a VM that holds lent credentials: the fork's memory
	// holds them too. Refused without it.
	WithLent bool `json:"with_lent,omitempty"`
}

// AccelMode is the configured accelerator choice.
type AccelMode string

// The modes: prove KVM and fall back to TCG; KVM or nothing; TCG always.
const (
	AccelAuto AccelMode = "auto"
	AccelKVM  AccelMode = "kvm"
	AccelTCG  AccelMode = "tcg"
)

// ParseAccelMode checks a config or flag value; empty is auto.
func ParseAccelMode(s string) (AccelMode, error) {
	switch m := AccelMode(s); m {
	case AccelAuto, AccelKVM, AccelTCG:
		return m, nil
	case "":
		return AccelAuto, nil
	}
	return "", fmt.Errorf("accel %q: want auto, kvm or tcg: %w", s, errdefs.ErrInvalid)
}

// What was found of KVM (Accel.KVM).
const (
	KVMWorks    = "works"
	KVMAbsent   = "absent"
	KVMUnusable = "unusable" // the device is there but cannot be opened
	KVMBroken   = "broken"   // it opens, and the probe failed
	KVMUnprobed = "not probed"
)
