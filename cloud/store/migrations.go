package store

// migration is one step of the schema, written once per backend. Both
// texts make the same tables, columns and indexes; only the types differ
// (times are Unix milliseconds, UTC, in both).
type migration struct {
	sqlite   string
	postgres string
}

// migrations are applied in order, each in the transaction that records
// it. Never edit a released migration: append a new one, for both
// backends.
//
// PostgreSQL types: BIGINT for every time and counter (milliseconds do
// not fit 32 bits), BOOLEAN for flags (queries write TRUE and FALSE,
// which SQLite reads as 1 and 0), BYTEA for hashes, and TEXT COLLATE "C"
// for text: ids order and compare byte by byte, as in SQLite, whatever
// the database's locale (list order and page cursors depend on it). JSON
// stays TEXT, so that a damaged value is read and reported (ErrDamaged)
// the same way.
var migrations = []migration{
	// 1: the first schema.
	{sqlite: `
CREATE TABLE workspaces (
	id                   TEXT PRIMARY KEY,
	name                 TEXT NOT NULL,
	acs_system_id        TEXT NOT NULL UNIQUE,
	connected_account_id TEXT NOT NULL UNIQUE,
	is_sandbox           INTEGER NOT NULL DEFAULT 0,
	created_at           INTEGER NOT NULL,
	next_card_number     INTEGER NOT NULL DEFAULT 100001,
	next_issue_sequence  INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE api_keys (
	id           TEXT PRIMARY KEY,
	workspace_id TEXT NOT NULL REFERENCES workspaces(id),
	hash         BLOB NOT NULL,
	created_at   INTEGER NOT NULL,
	revoked_at   INTEGER
);
CREATE TABLE bridges (
	id               TEXT PRIMARY KEY,
	workspace_id     TEXT NOT NULL REFERENCES workspaces(id),
	name             TEXT NOT NULL,
	token_id         TEXT NOT NULL UNIQUE,
	token_hash       BLOB NOT NULL,
	created_at       INTEGER NOT NULL,
	revoked_at       INTEGER,
	last_seen_at     INTEGER,
	software_version TEXT NOT NULL DEFAULT ''
);
CREATE TABLE encoders (
	id           TEXT PRIMARY KEY,
	workspace_id TEXT NOT NULL REFERENCES workspaces(id),
	bridge_id    TEXT NOT NULL REFERENCES bridges(id),
	protocol_id  TEXT NOT NULL,
	display_name TEXT NOT NULL,
	reader_name  TEXT NOT NULL,
	technologies TEXT NOT NULL DEFAULT '[]',
	created_at   INTEGER NOT NULL,
	removed_at   INTEGER,
	UNIQUE (bridge_id, protocol_id)
);
CREATE INDEX encoders_by_workspace ON encoders(workspace_id, created_at, id);
CREATE TABLE credentials (
	id                 TEXT PRIMARY KEY,
	workspace_id       TEXT NOT NULL REFERENCES workspaces(id),
	access_method_id   TEXT NOT NULL UNIQUE,
	acs_user_id        TEXT NOT NULL DEFAULT '',
	user_identity_id   TEXT NOT NULL DEFAULT '',
	card_number        TEXT NOT NULL,
	card_function_type TEXT NOT NULL,
	starts_at          INTEGER NOT NULL,
	ends_at            INTEGER NOT NULL,
	entrance_ids       TEXT NOT NULL DEFAULT '[]',
	issue_sequence     INTEGER NOT NULL,
	is_issued          INTEGER NOT NULL DEFAULT 0,
	issued_at          INTEGER,
	card_uid           TEXT NOT NULL DEFAULT '',
	card_technology    TEXT NOT NULL DEFAULT '',
	key_version        INTEGER NOT NULL DEFAULT 0,
	encode_jobs        INTEGER NOT NULL DEFAULT 0,
	created_at         INTEGER NOT NULL
);
CREATE INDEX credentials_by_workspace ON credentials(workspace_id, created_at, id);
CREATE TABLE action_attempts (
	id            TEXT PRIMARY KEY,
	workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
	action_type   TEXT NOT NULL,
	status        TEXT NOT NULL,
	result        TEXT,
	error_type    TEXT NOT NULL DEFAULT '',
	error_message TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
);
CREATE TABLE jobs (
	id                TEXT PRIMARY KEY,
	action_attempt_id TEXT NOT NULL UNIQUE REFERENCES action_attempts(id),
	workspace_id      TEXT NOT NULL REFERENCES workspaces(id),
	bridge_id         TEXT NOT NULL REFERENCES bridges(id),
	encoder_id        TEXT NOT NULL REFERENCES encoders(id),
	kind              TEXT NOT NULL,
	credential_id     TEXT NOT NULL DEFAULT '',
	issue_sequence    INTEGER NOT NULL DEFAULT 0,
	assign_to         TEXT NOT NULL DEFAULT '',
	payload           TEXT NOT NULL,
	deadline          INTEGER NOT NULL,
	created_at        INTEGER NOT NULL,
	sent_at           INTEGER,
	acked_at          INTEGER,
	stage             TEXT NOT NULL DEFAULT '',
	stage_at          INTEGER,
	result            TEXT,
	result_at         INTEGER,
	closed_at         INTEGER
);
CREATE INDEX jobs_open_by_bridge ON jobs(bridge_id) WHERE closed_at IS NULL;
CREATE INDEX jobs_open_by_deadline ON jobs(deadline) WHERE closed_at IS NULL;
CREATE TABLE simulations (
	encoder_id TEXT NOT NULL REFERENCES encoders(id),
	kind       TEXT NOT NULL,
	outcome    TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (encoder_id, kind)
);
`, postgres: `
CREATE TABLE workspaces (
	id                   TEXT COLLATE "C" PRIMARY KEY,
	name                 TEXT COLLATE "C" NOT NULL,
	acs_system_id        TEXT COLLATE "C" NOT NULL UNIQUE,
	connected_account_id TEXT COLLATE "C" NOT NULL UNIQUE,
	is_sandbox           BOOLEAN NOT NULL DEFAULT FALSE,
	created_at           BIGINT NOT NULL,
	next_card_number     BIGINT NOT NULL DEFAULT 100001,
	next_issue_sequence  BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE api_keys (
	id           TEXT COLLATE "C" PRIMARY KEY,
	workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
	hash         BYTEA NOT NULL,
	created_at   BIGINT NOT NULL,
	revoked_at   BIGINT
);
CREATE TABLE bridges (
	id               TEXT COLLATE "C" PRIMARY KEY,
	workspace_id     TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
	name             TEXT COLLATE "C" NOT NULL,
	token_id         TEXT COLLATE "C" NOT NULL UNIQUE,
	token_hash       BYTEA NOT NULL,
	created_at       BIGINT NOT NULL,
	revoked_at       BIGINT,
	last_seen_at     BIGINT,
	software_version TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE TABLE encoders (
	id           TEXT COLLATE "C" PRIMARY KEY,
	workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
	bridge_id    TEXT COLLATE "C" NOT NULL REFERENCES bridges(id),
	protocol_id  TEXT COLLATE "C" NOT NULL,
	display_name TEXT COLLATE "C" NOT NULL,
	reader_name  TEXT COLLATE "C" NOT NULL,
	technologies TEXT COLLATE "C" NOT NULL DEFAULT '[]',
	created_at   BIGINT NOT NULL,
	removed_at   BIGINT,
	UNIQUE (bridge_id, protocol_id)
);
CREATE INDEX encoders_by_workspace ON encoders(workspace_id, created_at, id);
CREATE TABLE credentials (
	id                 TEXT COLLATE "C" PRIMARY KEY,
	workspace_id       TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
	access_method_id   TEXT COLLATE "C" NOT NULL UNIQUE,
	acs_user_id        TEXT COLLATE "C" NOT NULL DEFAULT '',
	user_identity_id   TEXT COLLATE "C" NOT NULL DEFAULT '',
	card_number        TEXT COLLATE "C" NOT NULL,
	card_function_type TEXT COLLATE "C" NOT NULL,
	starts_at          BIGINT NOT NULL,
	ends_at            BIGINT NOT NULL,
	entrance_ids       TEXT COLLATE "C" NOT NULL DEFAULT '[]',
	issue_sequence     BIGINT NOT NULL,
	is_issued          BOOLEAN NOT NULL DEFAULT FALSE,
	issued_at          BIGINT,
	card_uid           TEXT COLLATE "C" NOT NULL DEFAULT '',
	card_technology    TEXT COLLATE "C" NOT NULL DEFAULT '',
	key_version        BIGINT NOT NULL DEFAULT 0,
	encode_jobs        BIGINT NOT NULL DEFAULT 0,
	created_at         BIGINT NOT NULL
);
CREATE INDEX credentials_by_workspace ON credentials(workspace_id, created_at, id);
CREATE TABLE action_attempts (
	id            TEXT COLLATE "C" PRIMARY KEY,
	workspace_id  TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
	action_type   TEXT COLLATE "C" NOT NULL,
	status        TEXT COLLATE "C" NOT NULL,
	result        TEXT COLLATE "C",
	error_type    TEXT COLLATE "C" NOT NULL DEFAULT '',
	error_message TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_at    BIGINT NOT NULL,
	updated_at    BIGINT NOT NULL
);
CREATE TABLE jobs (
	id                TEXT COLLATE "C" PRIMARY KEY,
	action_attempt_id TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES action_attempts(id),
	workspace_id      TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
	bridge_id         TEXT COLLATE "C" NOT NULL REFERENCES bridges(id),
	encoder_id        TEXT COLLATE "C" NOT NULL REFERENCES encoders(id),
	kind              TEXT COLLATE "C" NOT NULL,
	credential_id     TEXT COLLATE "C" NOT NULL DEFAULT '',
	issue_sequence    BIGINT NOT NULL DEFAULT 0,
	assign_to         TEXT COLLATE "C" NOT NULL DEFAULT '',
	payload           TEXT COLLATE "C" NOT NULL,
	deadline          BIGINT NOT NULL,
	created_at        BIGINT NOT NULL,
	sent_at           BIGINT,
	acked_at          BIGINT,
	stage             TEXT COLLATE "C" NOT NULL DEFAULT '',
	stage_at          BIGINT,
	result            TEXT COLLATE "C",
	result_at         BIGINT,
	closed_at         BIGINT
);
CREATE INDEX jobs_open_by_bridge ON jobs(bridge_id) WHERE closed_at IS NULL;
CREATE INDEX jobs_open_by_deadline ON jobs(deadline) WHERE closed_at IS NULL;
CREATE TABLE simulations (
	encoder_id TEXT COLLATE "C" NOT NULL REFERENCES encoders(id),
	kind       TEXT COLLATE "C" NOT NULL,
	outcome    TEXT COLLATE "C" NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (encoder_id, kind)
);
`},
	// 2: when a bridge last reported its job journal damaged and reset.
	{sqlite: `
ALTER TABLE bridges ADD COLUMN journal_reset_at INTEGER;
ALTER TABLE bridges ADD COLUMN journal_reset_reason TEXT NOT NULL DEFAULT '';
`, postgres: `
ALTER TABLE bridges ADD COLUMN journal_reset_at BIGINT;
ALTER TABLE bridges ADD COLUMN journal_reset_reason TEXT COLLATE "C" NOT NULL DEFAULT '';
`},
	// 3: the instances sharing the database and the bridge links they
	// hold (links.go).
	{sqlite: `
CREATE TABLE instances (
	id         TEXT PRIMARY KEY,
	started_at INTEGER NOT NULL,
	seen_at    INTEGER NOT NULL
);
CREATE TABLE bridge_links (
	bridge_id   TEXT PRIMARY KEY REFERENCES bridges(id),
	instance_id TEXT NOT NULL,
	linked_at   INTEGER NOT NULL
);
CREATE INDEX bridge_links_by_instance ON bridge_links(instance_id);
`, postgres: `
CREATE TABLE instances (
	id         TEXT PRIMARY KEY,
	started_at BIGINT NOT NULL,
	seen_at    BIGINT NOT NULL
);
CREATE TABLE bridge_links (
	bridge_id   TEXT PRIMARY KEY REFERENCES bridges(id),
	instance_id TEXT NOT NULL,
	linked_at   BIGINT NOT NULL
);
CREATE INDEX bridge_links_by_instance ON bridge_links(instance_id);
`},
	// 4: events, webhooks and the outbox of webhook deliveries (events.go).
	{sqlite: `
ALTER TABLE workspaces ADD COLUMN next_event_seq INTEGER NOT NULL DEFAULT 1;
CREATE TABLE events (
	id                TEXT PRIMARY KEY,
	workspace_id      TEXT NOT NULL REFERENCES workspaces(id),
	seq               INTEGER NOT NULL,
	event_type        TEXT NOT NULL,
	acs_encoder_id    TEXT NOT NULL DEFAULT '',
	acs_credential_id TEXT NOT NULL DEFAULT '',
	access_method_id  TEXT NOT NULL DEFAULT '',
	body              TEXT NOT NULL,
	occurred_at       INTEGER NOT NULL,
	created_at        INTEGER NOT NULL,
	UNIQUE (workspace_id, seq)
);
CREATE INDEX events_by_time ON events(workspace_id, created_at, seq);
CREATE TABLE webhooks (
	id           TEXT PRIMARY KEY,
	workspace_id TEXT NOT NULL REFERENCES workspaces(id),
	url          TEXT NOT NULL,
	event_types  TEXT NOT NULL,
	secret       TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	deleted_at   INTEGER
);
CREATE INDEX webhooks_by_workspace ON webhooks(workspace_id, created_at, id);
CREATE TABLE deliveries (
	webhook_id   TEXT NOT NULL REFERENCES webhooks(id),
	event_id     TEXT NOT NULL REFERENCES events(id),
	workspace_id TEXT NOT NULL REFERENCES workspaces(id),
	seq          INTEGER NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	next_at      INTEGER NOT NULL,
	lease_owner  TEXT NOT NULL DEFAULT '',
	lease_until  INTEGER NOT NULL DEFAULT 0,
	last_status  INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	delivered_at INTEGER,
	failed_at    INTEGER,
	PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX deliveries_open ON deliveries(webhook_id, seq) WHERE delivered_at IS NULL AND failed_at IS NULL;
`, postgres: `
ALTER TABLE workspaces ADD COLUMN next_event_seq BIGINT NOT NULL DEFAULT 1;
CREATE TABLE events (
	id                TEXT COLLATE "C" PRIMARY KEY,
	workspace_id      TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
	seq               BIGINT NOT NULL,
	event_type        TEXT COLLATE "C" NOT NULL,
	acs_encoder_id    TEXT COLLATE "C" NOT NULL DEFAULT '',
	acs_credential_id TEXT COLLATE "C" NOT NULL DEFAULT '',
	access_method_id  TEXT COLLATE "C" NOT NULL DEFAULT '',
	body              TEXT COLLATE "C" NOT NULL,
	occurred_at       BIGINT NOT NULL,
	created_at        BIGINT NOT NULL,
	UNIQUE (workspace_id, seq)
);
CREATE INDEX events_by_time ON events(workspace_id, created_at, seq);
CREATE TABLE webhooks (
	id           TEXT COLLATE "C" PRIMARY KEY,
	workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
	url          TEXT COLLATE "C" NOT NULL,
	event_types  TEXT COLLATE "C" NOT NULL,
	secret       TEXT COLLATE "C" NOT NULL,
	created_at   BIGINT NOT NULL,
	deleted_at   BIGINT
);
CREATE INDEX webhooks_by_workspace ON webhooks(workspace_id, created_at, id);
CREATE TABLE deliveries (
	webhook_id   TEXT COLLATE "C" NOT NULL REFERENCES webhooks(id),
	event_id     TEXT COLLATE "C" NOT NULL REFERENCES events(id),
	workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
	seq          BIGINT NOT NULL,
	attempts     BIGINT NOT NULL DEFAULT 0,
	next_at      BIGINT NOT NULL,
	lease_owner  TEXT COLLATE "C" NOT NULL DEFAULT '',
	lease_until  BIGINT NOT NULL DEFAULT 0,
	last_status  INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_at   BIGINT NOT NULL,
	delivered_at BIGINT,
	failed_at    BIGINT,
	PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX deliveries_open ON deliveries(webhook_id, seq) WHERE delivered_at IS NULL AND failed_at IS NULL;
`},
}

// SchemaVersion is the schema version this build writes.
var SchemaVersion = len(migrations)
