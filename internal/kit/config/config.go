// Package config loads banger's configuration file: Load, then defaults,
// then Validate. A missing file means all defaults.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/banger-dev/banger/internal/kit/names"
	"github.com/banger-dev/banger/internal/kit/units"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// DefaultPath is where the daemon looks for its configuration.
const DefaultPath = "/etc/banger/config.toml"

// Config is the daemon's configuration.
type Config struct {
	// DefaultImageName is the image `vm run` uses when none is given.
	DefaultImageName string `toml:"default_image_name"`
	// DefaultKernelName is the kernel used when neither the command nor
	// the image names one.
	DefaultKernelName string `toml:"default_kernel_name"`
	// KernelCatalogs are extra kernel catalog files (paths or https URLs),
	// merged after the embedded catalog; a later entry of the same name
	// replaces an earlier one.
	KernelCatalogs []string `toml:"kernel_catalogs"`
	// ImageCatalogs are extra image catalog files, as for kernels.
	ImageCatalogs []string `toml:"image_catalogs"`
	// RegistryMirrors maps a registry host to mirror endpoints.
	RegistryMirrors map[string][]string `toml:"registry_mirrors"`
	// InsecureRegistries may be reached over plain http; loopback ones
	// always may.
	InsecureRegistries []string `toml:"insecure_registries"`
	// MaxDownloadBytes bounds any single download.
	MaxDownloadBytes int64 `toml:"max_download_bytes"`
	// MaxUnpackedBytes bounds what one archive may unpack to.
	MaxUnpackedBytes int64 `toml:"max_unpacked_bytes"`
	// SocketGroup owns the API socket (mode 0660) when the group exists.
	SocketGroup string `toml:"socket_group"`
	// SSHPublicKeys are public key files whose keys every image accepts
	// for root.
	SSHPublicKeys []string `toml:"ssh_public_keys"`
	// AgentPath is the guest agent binary injected into images as init
	// and built into banger's initramfs; banger-agent next to the banger
	// binary when empty.
	AgentPath string `toml:"agent_path"`
	// DefaultCPUs and DefaultMemoryMiB size VMs created without --cpus
	// or --memory.
	DefaultCPUs      int `toml:"default_cpus"`
	DefaultMemoryMiB int `toml:"default_memory_mib"`
	// ReadyTimeout bounds how long starting a VM waits for its guest
	// agent ("2m"); StopTimeout how long stopping waits for the guest to
	// power off before the VMM is killed ("30s").
	ReadyTimeout Duration `toml:"ready_timeout"`
	StopTimeout  Duration `toml:"stop_timeout"`
	// VMMUser is who VMM processes run as once started, when the daemon
	// runs as root: "auto" gives each VMM a uid of its own from
	// VMMUIDBase on (no two VMs share one, so one VMM that escapes its
	// guest reaches no other); a user name makes them all that user, and
	// one that does not exist stops every VM start.
	VMMUser string `toml:"vmm_user"`
	// VMMUIDBase and VMMUIDCount are the uids "auto" hands out: a range
	// no account on the host uses.
	VMMUIDBase  int `toml:"vmm_uid_base"`
	VMMUIDCount int `toml:"vmm_uid_count"`
	// DiskCache is the VMs' disk cache mode: "writeback" honours guests'
	// flushes (what a guest synced survives a killed VMM); "unsafe"
	// ignores them, faster for writes and for throwaway VMs only.
	DiskCache string `toml:"disk_cache"`
	// UserNet is what guests on the user-mode network reach: "auto"
	// (passt where it runs, else isolated), "passt" (the outside
	// network, never the host's loopback; no VM starts without it),
	// "isolated" (nothing; published ports still answer) or "slirp"
	// (qemu's own: the outside and, at 10.0.2.2, every service on the
	// host's loopback, which a hostile guest can then reach).
	UserNet string `toml:"user_net"`
	// Accel is "auto" (prove KVM with a probe guest, else TCG), "kvm"
	// (KVM or no VM starts) or "tcg" (software emulation, KVM untouched).
	Accel string `toml:"accel"`
	// DefaultDisk is the root disk size of a VM created without --disk
	// ("10G"); images are built with file systems this size, so that such
	// a VM's disk is a thin overlay.
	DefaultDisk string `toml:"default_disk"`
	// MaxSeedBytes bounds the work seed a client may send (the files of
	// the directory `vm run` seeds into /work).
	MaxSeedBytes int64 `toml:"max_seed_bytes"`
	// MaxPullBytes and MaxPullEntries bound what reading a VM's work back
	// (vm diff, vm pull) may bring: the files' apparent sizes (a sparse
	// file counts whole) and the entries. A work disk's own size bounds
	// the bytes too.
	MaxPullBytes   int64 `toml:"max_pull_bytes"`
	MaxPullEntries int   `toml:"max_pull_entries"`
	// Templates: a VM's first start resumes from a template of its kind
	// (image, kernel, size), made by the first such start, instead of
	// booting. Off, every VM boots.
	Templates bool `toml:"templates"`
	// GuestModules gives each guest its kernel's modules at
	// /lib/modules/<release>, read-only (a disk built once per kernel
	// with depmod's indexes), with modprobe working in any image. Off,
	// guests have only what their kernel has built in.
	GuestModules bool `toml:"guest_modules"`
	// ActivityEvents bounds each VM's activity record (banger vm
	// report): past it the oldest events go, counted. 0 keeps no record.
	ActivityEvents int `toml:"activity_events"`
	// DefaultNetwork is the network mode of a VM created without --net:
	// "user" (the VMM's user-mode network, above), "bridge" (a tap on
	// banger's bridge; the daemon must be root) or "none".
	DefaultNetwork string `toml:"default_network"`
	// BridgeName and BridgeSubnet shape bridge mode: the bridge takes the
	// subnet's first address, guests lease the others. The subnet must
	// not overlap a route of the host's.
	BridgeName   string `toml:"bridge_name"`
	BridgeSubnet string `toml:"bridge_subnet"`
	// DNSUpstream is where banger's DNS forwarder for bridge-mode guests
	// asks ("ADDR" or "ADDR:PORT"); the host's first nameserver when
	// empty.
	DNSUpstream string `toml:"dns_upstream"`
	// GuardHost keeps guests off the host in every network mode: its own
	// addresses, link-local and loopback ranges and the networks it is
	// directly connected to (its LAN) are refused to them, with banger's
	// own nftables table for user-mode VMs (banger-guard, matching the
	// VMMs' uids) and its bridge table for bridge mode. Off only where
	// nftables cannot run; user_net = "slirp" turns it off for user mode.
	GuardHost bool `toml:"guard_host"`
	// GuestLAN are networks of the host's LAN that guests may reach all
	// the same ("192.168.1.10/32": a package mirror there).
	GuestLAN []string `toml:"guest_lan"`
	// ProxyCAFiles are CA certificates (PEM files) the secrets proxy
	// trusts for real servers besides the host's own (a company's CA, a
	// test's): a server it cannot verify gets no secret.
	ProxyCAFiles []string `toml:"proxy_ca_files"`
	// MaxVMsPerUser, MaxCPUsPerUser and MaxMemoryPerUser bound what the
	// VMs of one caller who is not root take: VMs it has (running or
	// not), and the CPUs and memory of those running. 0 is no limit. The
	// defaults let one user fill most of the host but not all of it:
	// three quarters of its CPUs (at least 2) and of its memory.
	MaxVMsPerUser  int `toml:"max_vms_per_user"`
	MaxCPUsPerUser int `toml:"max_cpus_per_user"`
	// MaxMemoryPerUser is a size ("48G") or a share of the host's memory
	// ("75%"); "0" is no limit.
	MaxMemoryPerUser string `toml:"max_memory_per_user"`
}

// MemoryPerUserMiB is MaxMemoryPerUser in MiB of a host with hostMiB of
// memory (valid after Validate; 0 is no limit).
func (c Config) MemoryPerUserMiB(hostMiB int64) int64 {
	if pct, ok := strings.CutSuffix(c.MaxMemoryPerUser, "%"); ok {
		n, _ := strconv.Atoi(pct)
		return hostMiB * int64(n) / 100
	}
	n, _ := units.ParseSize(c.MaxMemoryPerUser, units.MiB)
	return n >> 20
}

// LAN is GuestLAN parsed (valid after Validate).
func (c Config) LAN() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.GuestLAN {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Subnet is BridgeSubnet parsed (valid after Validate).
func (c Config) Subnet() netip.Prefix {
	p, _ := netip.ParsePrefix(c.BridgeSubnet)
	return p.Masked()
}

// Upstream is DNSUpstream as ADDR:PORT ("" when empty).
func (c Config) Upstream() string {
	if c.DNSUpstream == "" {
		return ""
	}
	if ap, err := netip.ParseAddrPort(c.DNSUpstream); err == nil {
		return ap.String()
	}
	return net.JoinHostPort(c.DNSUpstream, "53")
}

// DefaultDiskBytes is DefaultDisk in bytes (valid after Validate).
func (c Config) DefaultDiskBytes() int64 {
	n, _ := units.ParseSize(c.DefaultDisk, units.MiB)
	return n
}

// Duration is a time.Duration written as "90s" or "2m" in the file.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 90s or 2m", b)
	}
	d.Duration = v
	return nil
}

// Defaults returns the configuration used when no file is present.
func Defaults() Config {
	return Config{
		DefaultImageName:  "debian-bookworm",
		DefaultKernelName: "debian-bookworm",
		MaxDownloadBytes:  4 << 30,
		MaxUnpackedBytes:  8 << 30,
		SocketGroup:       "banger",
		DefaultCPUs:       2,
		DefaultMemoryMiB:  1024,
		ReadyTimeout:      Duration{2 * time.Minute},
		StopTimeout:       Duration{30 * time.Second},
		VMMUser:           "auto",
		VMMUIDBase:        1900000000,
		VMMUIDCount:       65536,
		DiskCache:         "writeback",
		UserNet:           "auto",
		Accel:             string(api.AccelAuto),
		DefaultDisk:       "10G",
		MaxSeedBytes:      2 << 30,
		MaxPullBytes:      16 << 30,
		MaxPullEntries:    1000000,
		Templates:         true,
		GuestModules:      true,
		ActivityEvents:    10000,
		DefaultNetwork:    "user",
		BridgeName:        "banger0",
		BridgeSubnet:      "10.213.0.0/24",
		GuardHost:         true,
		MaxVMsPerUser:     32,
		MaxCPUsPerUser:    max(2, (3*runtime.NumCPU()+3)/4),
		MaxMemoryPerUser:  "75%",
	}
}

// Load reads the file at path over the defaults and validates the result.
// Unknown keys are errors, so that a typo does not silently do nothing.
func Load(path string) (Config, error) {
	cfg := Defaults()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("read config %s: %w", path, err)
	}
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		return cfg, fmt.Errorf("config %s: %w: %w", path, err, errdefs.ErrInvalid)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return cfg, fmt.Errorf("config %s: unknown setting %s: %w", path, strings.Join(keys, ", "), errdefs.ErrInvalid)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	// Relative catalog paths are relative to the config file, as users of
	// include-style settings expect.
	base := filepath.Dir(path)
	for i, c := range cfg.KernelCatalogs {
		if !isURL(c) && !filepath.IsAbs(c) {
			cfg.KernelCatalogs[i] = filepath.Join(base, c)
		}
	}
	for i, c := range cfg.ImageCatalogs {
		if !isURL(c) && !filepath.IsAbs(c) {
			cfg.ImageCatalogs[i] = filepath.Join(base, c)
		}
	}
	for i, k := range cfg.SSHPublicKeys {
		if !filepath.IsAbs(k) {
			cfg.SSHPublicKeys[i] = filepath.Join(base, k)
		}
	}
	if cfg.AgentPath != "" && !filepath.IsAbs(cfg.AgentPath) {
		cfg.AgentPath = filepath.Join(base, cfg.AgentPath)
	}
	return cfg, nil
}

// Validate checks every setting and says which one is wrong.
func (c Config) Validate() error {
	var errs []error
	for _, check := range []func() []error{c.checkNetwork, c.checkVMM, c.checkSources, c.checkLimits, c.checkVMDefaults} {
		errs = append(errs, check()...)
	}
	return errors.Join(errs...)
}

// checkNetwork checks the guests' networks: user-mode, bridge, LAN
// access and DNS.
func (c Config) checkNetwork() []error {
	var errs []error
	if !slices.Contains([]string{"auto", "passt", "isolated", "slirp"}, c.UserNet) {
		errs = append(errs, fmt.Errorf("user_net %q: want auto, passt, isolated or slirp: %w", c.UserNet, errdefs.ErrInvalid))
	}
	if !slices.Contains([]string{"user", "bridge", "none"}, c.DefaultNetwork) {
		errs = append(errs, fmt.Errorf("default_network %q: want user, bridge or none: %w", c.DefaultNetwork, errdefs.ErrInvalid))
	}
	if n := c.BridgeName; n == "" || len(n) > 15 || strings.ContainsAny(n, "/ \t\n:") || strings.HasPrefix(n, "bg-") {
		errs = append(errs, fmt.Errorf("bridge_name %q: want an interface name of 1 to 15 characters, without '/', ':' or spaces, not under banger's tap prefix bg-: %w", n, errdefs.ErrInvalid))
	}
	for _, l := range c.GuestLAN {
		if p, err := netip.ParsePrefix(l); err != nil || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("guest_lan %q: want an IPv4 network, such as 192.168.1.10/32: %w", l, errdefs.ErrInvalid))
		}
	}
	if p, err := netip.ParsePrefix(c.BridgeSubnet); err != nil || !p.Addr().Is4() || p.Bits() < 16 || p.Bits() > 29 {
		errs = append(errs, fmt.Errorf("bridge_subnet %q: want an IPv4 network from /16 to /29, such as 10.213.0.0/24: %w", c.BridgeSubnet, errdefs.ErrInvalid))
	}
	if u := c.DNSUpstream; u != "" {
		if _, err := netip.ParseAddrPort(u); err != nil {
			if _, err := netip.ParseAddr(u); err != nil {
				errs = append(errs, fmt.Errorf("dns_upstream %q: want ADDR or ADDR:PORT: %w", u, errdefs.ErrInvalid))
			}
		}
	}
	return errs
}

// checkVMM checks how the VMM runs: its disk cache and the user it
// drops root to.
func (c Config) checkVMM() []error {
	var errs []error
	if c.DiskCache != "writeback" && c.DiskCache != "unsafe" {
		errs = append(errs, fmt.Errorf("disk_cache %q: want writeback or unsafe: %w", c.DiskCache, errdefs.ErrInvalid))
	}
	if c.VMMUser == "" {
		errs = append(errs, fmt.Errorf("vmm_user is empty: qemu must not keep root; \"auto\" gives each VM a uid of its own: %w", errdefs.ErrInvalid))
	}
	if c.VMMUIDBase < 65536 || c.VMMUIDCount < 1 || int64(c.VMMUIDBase)+int64(c.VMMUIDCount) > 1<<31-1 {
		errs = append(errs, fmt.Errorf("vmm_uid_base %d, vmm_uid_count %d: the range must start at 65536 or above (past every account) and end below 2^31: %w", c.VMMUIDBase, c.VMMUIDCount, errdefs.ErrInvalid))
	}
	return errs
}

// checkSources checks where images and kernels come from: the default
// names, the catalogs and the registry mirrors.
func (c Config) checkSources() []error {
	var errs []error
	if c.DefaultImageName != "" {
		if err := names.Validate("image", c.DefaultImageName); err != nil {
			errs = append(errs, fmt.Errorf("default_image_name: %w", err))
		}
	}
	if c.DefaultKernelName != "" {
		if err := names.Validate("kernel", c.DefaultKernelName); err != nil {
			errs = append(errs, fmt.Errorf("default_kernel_name: %w", err))
		}
	}
	for _, list := range []struct {
		key  string
		vals []string
	}{{"kernel_catalogs", c.KernelCatalogs}, {"image_catalogs", c.ImageCatalogs}} {
		for _, v := range list.vals {
			if v == "" {
				errs = append(errs, fmt.Errorf("%s: empty entry: %w", list.key, errdefs.ErrInvalid))
				continue
			}
			if strings.Contains(v, "://") && !isURL(v) {
				errs = append(errs, fmt.Errorf("%s: %q: only https:// (or http:// to a loopback address) URLs and file paths are supported: %w", list.key, v, errdefs.ErrInvalid))
			}
		}
	}
	for host, mirrors := range c.RegistryMirrors {
		if len(mirrors) == 0 {
			errs = append(errs, fmt.Errorf("registry_mirrors.%q: no mirror endpoints: %w", host, errdefs.ErrInvalid))
		}
	}
	return errs
}

// checkLimits checks the bounds on downloads, unpacking and each user's
// share of the host.
func (c Config) checkLimits() []error {
	var errs []error
	for _, l := range []struct {
		bad  bool
		what string
	}{
		{c.MaxDownloadBytes <= 0, "max_download_bytes must be positive"},
		{c.MaxSeedBytes <= 0, "max_seed_bytes must be positive"},
		{c.MaxPullBytes <= 0 || c.MaxPullEntries <= 0, "max_pull_bytes and max_pull_entries must be positive"},
		{c.MaxUnpackedBytes <= 0, "max_unpacked_bytes must be positive"},
		{c.MaxVMsPerUser < 0 || c.MaxCPUsPerUser < 0, "max_vms_per_user and max_cpus_per_user must not be negative (0 is no limit)"},
	} {
		if l.bad {
			errs = append(errs, fmt.Errorf("%s: %w", l.what, errdefs.ErrInvalid))
		}
	}
	if err := checkMemoryPerUser(c.MaxMemoryPerUser); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// checkVMDefaults checks what a VM gets when its request does not say:
// CPUs, memory, timeouts, accelerator and disk size.
func (c Config) checkVMDefaults() []error {
	var errs []error
	if c.DefaultCPUs < 1 {
		errs = append(errs, fmt.Errorf("default_cpus must be at least 1: %w", errdefs.ErrInvalid))
	}
	if c.DefaultMemoryMiB < 128 {
		errs = append(errs, fmt.Errorf("default_memory_mib must be at least 128: %w", errdefs.ErrInvalid))
	}
	if c.ReadyTimeout.Duration <= 0 || c.StopTimeout.Duration < 0 {
		errs = append(errs, fmt.Errorf("ready_timeout must be positive and stop_timeout not negative: %w", errdefs.ErrInvalid))
	}
	if _, err := api.ParseAccelMode(c.Accel); err != nil {
		errs = append(errs, err)
	}
	if n, err := units.ParseSize(c.DefaultDisk, units.MiB); err != nil {
		errs = append(errs, fmt.Errorf("default_disk: %w", err))
	} else if n < 64<<20 {
		errs = append(errs, fmt.Errorf("default_disk %s is too small: at least 64M: %w", c.DefaultDisk, errdefs.ErrInvalid))
	}
	return errs
}

// isURL reports whether s is a URL banger will fetch: https anywhere, or
// plain http to a loopback host (a local test or mirror server).
func isURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	return u.Scheme == "https" || (u.Scheme == "http" && IsLoopbackHost(u.Hostname()))
}

// IsURL is isURL for other packages.
func IsURL(s string) bool { return isURL(s) }

// IsLoopbackHost reports whether host names this machine.
func IsLoopbackHost(host string) bool {
	return host == "localhost" || host == "::1" || strings.HasPrefix(host, "127.")
}

func checkMemoryPerUser(v string) error {
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		if n, err := strconv.Atoi(pct); err != nil || n < 1 || n > 100 {
			return fmt.Errorf("max_memory_per_user %q: a share of the host's memory is 1%% to 100%%: %w", v, errdefs.ErrInvalid)
		}
		return nil
	}
	if _, err := units.ParseSize(v, units.MiB); err != nil {
		return fmt.Errorf("max_memory_per_user %q: want a size (\"48G\"), a share of the host's memory (\"75%%\") or \"0\" (no limit): %w", v, errdefs.ErrInvalid)
	}
	return nil
}
