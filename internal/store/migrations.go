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
}
