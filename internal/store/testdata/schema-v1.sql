-- A database as banger wrote it at schema version 1, with one kernel.
CREATE TABLE kernels (
	name        TEXT PRIMARY KEY,
	version     TEXT NOT NULL,
	arch        TEXT NOT NULL,
	source_kind TEXT NOT NULL,
	source      TEXT NOT NULL,
	digest      TEXT NOT NULL,
	created_at  TEXT NOT NULL
);
INSERT INTO kernels VALUES ('old-kernel', '5.10', 'x86_64', 'url', 'url https://example.org/vmlinux',
	'sha256:0000000000000000000000000000000000000000000000000000000000000000', '2025-01-02T03:04:05Z');
PRAGMA user_version = 1;
