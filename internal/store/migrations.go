package store

// migrations[i] moves the schema from version i to i+1. Never edit a
// migration that has shipped; append a new one.
var migrations = []string{
	// 1: published kernels.
	`CREATE TABLE kernels (
		name        TEXT PRIMARY KEY,
		version     TEXT NOT NULL,
		arch        TEXT NOT NULL,
		source_kind TEXT NOT NULL,
		source      TEXT NOT NULL,
		digest      TEXT NOT NULL,
		created_at  TEXT NOT NULL
	);`,
	// 2: record each published file with its checksum, and the kernel's
	// modules, so that show and later integrity checks need not re-read
	// the files.
	`ALTER TABLE kernels ADD COLUMN release TEXT NOT NULL DEFAULT '';
	ALTER TABLE kernels ADD COLUMN modules INTEGER NOT NULL DEFAULT 0;
	CREATE TABLE kernel_files (
		kernel  TEXT NOT NULL REFERENCES kernels(name) ON DELETE CASCADE,
		name    TEXT NOT NULL,
		size    INTEGER NOT NULL,
		sha256  TEXT NOT NULL,
		count   INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (kernel, name)
	);`,
	// 3: published images.
	`CREATE TABLE images (
		name        TEXT PRIMARY KEY,
		source_kind TEXT NOT NULL,
		source      TEXT NOT NULL,
		digest      TEXT NOT NULL,
		kernel      TEXT NOT NULL,
		size        INTEGER NOT NULL,
		layers      INTEGER NOT NULL,
		files       INTEGER NOT NULL,
		created_at  TEXT NOT NULL
	);`,
	// 4: VMs. ports and authorized_keys are JSON arrays; pid and
	// pid_start identify the detached VMM process across daemon restarts.
	`CREATE TABLE vms (
		name            TEXT PRIMARY KEY,
		id              TEXT NOT NULL UNIQUE,
		image           TEXT NOT NULL,
		kernel          TEXT NOT NULL,
		cpus            INTEGER NOT NULL,
		memory_mib      INTEGER NOT NULL,
		disk_bytes      INTEGER NOT NULL,
		ssh_port        INTEGER NOT NULL,
		ports           TEXT NOT NULL,
		authorized_keys TEXT NOT NULL,
		state           TEXT NOT NULL,
		pid             INTEGER NOT NULL DEFAULT 0,
		pid_start       INTEGER NOT NULL DEFAULT 0,
		host_key        TEXT NOT NULL DEFAULT '',
		console_offset  INTEGER NOT NULL DEFAULT 0,
		created_at      TEXT NOT NULL,
		started_at      TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX vms_image ON vms(image);
	CREATE INDEX vms_kernel ON vms(kernel);`,
	// 5: the accelerator each VM last booted with ("kvm", or "tcg (why)").
	`ALTER TABLE vms ADD COLUMN accel TEXT NOT NULL DEFAULT ''`,
	// 6: the work disk's record (api.Work as JSON), "" for none.
	`ALTER TABLE vms ADD COLUMN work TEXT NOT NULL DEFAULT ''`,
	// 7: the tool that made the VM (api.MadeBy as JSON), "" for the CLI.
	`ALTER TABLE vms ADD COLUMN made_by TEXT NOT NULL DEFAULT ''`,
	// 8: the template the VM was resumed from ("" for a VM that booted):
	// its root disk is an overlay over the template's.
	`ALTER TABLE vms ADD COLUMN template TEXT NOT NULL DEFAULT ''`,
	// 9: the snapshot the VM was forked from ("" for none).
	`ALTER TABLE vms ADD COLUMN snapshot TEXT NOT NULL DEFAULT ''`,
	// 10: networks. A VM's network mode and egress policy; each
	// bridge-mode VM's address lease (kept while the VM exists, stopped or
	// not); the names and addresses its DNS lookups resolved to.
	`ALTER TABLE vms ADD COLUMN network TEXT NOT NULL DEFAULT '';
	ALTER TABLE vms ADD COLUMN egress TEXT NOT NULL DEFAULT '';
	CREATE TABLE leases (
		ip  TEXT PRIMARY KEY,
		vm  TEXT NOT NULL UNIQUE,
		mac TEXT NOT NULL
	);
	CREATE TABLE egress (
		vm    TEXT NOT NULL,
		name  TEXT NOT NULL,
		addr  TEXT NOT NULL,
		count INTEGER NOT NULL,
		first TEXT NOT NULL,
		last  TEXT NOT NULL,
		PRIMARY KEY (vm, name, addr)
	);`,
	// 11: owners. Each VM, image and kernel records the uid of the caller
	// that made it; an image or kernel a user made from its own data is
	// seen by others only once shared. What existed before owners were
	// recorded is root's, and images and kernels stay seen by everyone.
	`ALTER TABLE vms ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE images ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE images ADD COLUMN shared INTEGER NOT NULL DEFAULT 1;
	ALTER TABLE kernels ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE kernels ADD COLUMN shared INTEGER NOT NULL DEFAULT 1;`,
	// 12: the init system each VM boots with ("" is banger's own).
	`ALTER TABLE vms ADD COLUMN init TEXT NOT NULL DEFAULT ''`,
	// 13: each VM's activity record, kept until the VM is removed. A
	// counted event (non-empty key) is one row whose count and last grow;
	// activity_dropped counts what the record let go of to stay bounded.
	`CREATE TABLE activity (
		id    INTEGER PRIMARY KEY AUTOINCREMENT,
		vm    TEXT NOT NULL,
		at    TEXT NOT NULL,
		kind  TEXT NOT NULL,
		key   TEXT NOT NULL DEFAULT '',
		count INTEGER NOT NULL DEFAULT 1,
		last  TEXT NOT NULL DEFAULT '',
		data  TEXT NOT NULL
	);
	CREATE INDEX activity_vm ON activity(vm, id);
	CREATE UNIQUE INDEX activity_key ON activity(vm, key) WHERE key != '';
	CREATE TABLE activity_dropped (
		vm TEXT PRIMARY KEY,
		n  INTEGER NOT NULL
	);`,
}
