-- skypanda embedded store (SQLite, WAL). One file: $SKYPANDA_HOME/skypanda.db
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    n_jobs INTEGER NOT NULL DEFAULT 0,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    workflow_id TEXT,
    iteration INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS tasks_recent ON tasks (created_at DESC);

CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS workflows_recent ON workflows (created_at DESC);

CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    memory_mb INTEGER NOT NULL,
    cores INTEGER NOT NULL,
    walltime_s REAL NOT NULL,
    command TEXT NOT NULL,
    inputs TEXT NOT NULL,
    env TEXT NOT NULL,
    parents TEXT NOT NULL,
    pilot_id TEXT,
    kill_requested INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    error_code INTEGER,
    error_diag TEXT NOT NULL DEFAULT '',
    log_uri TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    flags TEXT NOT NULL DEFAULT '{}',
    stage_in INTEGER NOT NULL DEFAULT 0,
    output_patterns TEXT NOT NULL DEFAULT '[]',
    outputs TEXT NOT NULL DEFAULT '[]',    -- JSON list of OutputFile, set when it finished
    owner TEXT NOT NULL DEFAULT 'local'    -- the task's owner (fair share)
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_task ON jobs (task_id, idx);
CREATE INDEX IF NOT EXISTS jobs_by_task_status ON jobs (task_id, status);
-- Dispatch order: priority, then age; a partial index holds only what can be dispatched.
CREATE INDEX IF NOT EXISTS jobs_dispatch ON jobs (queue, priority DESC, created_at, idx)
    WHERE status = 'activated';
-- Fair share: one owner's dispatch order on a queue.
CREATE INDEX IF NOT EXISTS jobs_dispatch_owner ON jobs (queue, owner, priority DESC, created_at, idx)
    WHERE status = 'activated';
-- Live jobs by queue (fair share counts each owner's running jobs).
CREATE INDEX IF NOT EXISTS jobs_live_by_queue ON jobs (queue, owner)
    WHERE status IN ('sent', 'starting', 'running');
CREATE INDEX IF NOT EXISTS jobs_live_by_pilot ON jobs (pilot_id)
    WHERE status IN ('sent', 'starting', 'running');

-- Job dependencies. parent_status is NULL while the parent has not ended, then its final
-- status: a child is released when none of its edges is NULL (one index seek per child).
CREATE TABLE IF NOT EXISTS job_edges (
    parent TEXT NOT NULL,
    child TEXT NOT NULL,
    parent_status TEXT,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_edges_by_child ON job_edges (child, parent_status);

CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    pilot_id TEXT,
    status TEXT NOT NULL,
    started_at REAL,
    ended_at REAL,
    exit_code INTEGER,
    error_code INTEGER,
    error_diag TEXT NOT NULL DEFAULT '',
    log_uri TEXT,
    PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS pilots (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL,
    heard_at REAL NOT NULL,     -- last heartbeat, or creation: what the sweep compares
    heartbeat_at REAL           -- last heartbeat only (NULL: never heard from)
);
CREATE INDEX IF NOT EXISTS pilots_by_queue ON pilots (queue, status);

CREATE TABLE IF NOT EXISTS scaler_notes (
    queue TEXT PRIMARY KEY,
    note TEXT NOT NULL,
    at REAL NOT NULL
);

-- Small fleet-wide marks, one JSON record each: `sweep` (the sweep's pulse: ports.SweepMark)
-- and `backoff:<queue>` (when an admin last reset the queue's back-off).
CREATE TABLE IF NOT EXISTS fleet_marks (
    name TEXT PRIMARY KEY,
    mark TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    subject TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    delivered_at REAL,
    resent_at REAL,
    tries INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE delivered_at IS NULL AND dead = 0;

CREATE TABLE IF NOT EXISTS audit (
    id TEXT PRIMARY KEY,        -- sorts by time (domain.audit.audit_id)
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    target_id TEXT NOT NULL,
    entry TEXT NOT NULL         -- the whole AuditEntry, JSON
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_by_target ON audit (target_id, id);
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit (actor, id);
