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
-- Tasks held by a start_after (domain.chain), by the id of the task or workflow they wait for;
-- partial: only pending tasks are in it (the query names the same expression and status).
CREATE INDEX IF NOT EXISTS tasks_held ON tasks (
    coalesce(json_extract(spec, '$.start_after.task'), json_extract(spec, '$.start_after.workflow'))
) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    waits_on TEXT  -- held by a start_after: the trigger's id, until the hold ends (domain.chain)
);
CREATE INDEX IF NOT EXISTS workflows_recent ON workflows (created_at DESC);
CREATE INDEX IF NOT EXISTS workflows_held ON workflows (waits_on) WHERE waits_on IS NOT NULL;

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

-- Watch rules (domain.watch): the rule as JSON, its bucket (or folder) to find it by, and the
-- sequence number of its open batch (the next objects' batch).
CREATE TABLE IF NOT EXISTS watches (
    name TEXT PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    bucket TEXT NOT NULL,
    open_seq INTEGER NOT NULL DEFAULT 0,
    rule TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS watches_by_bucket ON watches (bucket);
-- One row per (rule, object): its primary key is what makes an object seen twice one input.
CREATE TABLE IF NOT EXISTS watch_objects (
    key TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    uri TEXT NOT NULL,
    seen_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS watch_objects_by_batch ON watch_objects (batch);
CREATE TABLE IF NOT EXISTS watch_batches (
    id TEXT PRIMARY KEY,        -- <rule uid>-<seq>
    rule TEXT NOT NULL,         -- the rule's name
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,       -- domain.watch.BatchStatus
    count INTEGER NOT NULL,
    first_at REAL NOT NULL,
    due_at REAL NOT NULL,
    task_id TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS watch_batches_due ON watch_batches (status, due_at);
-- Notifications (issue 15): owners' webhooks and signing secrets, and deliveries (one per
-- (end event, URL)) with their attempts as JSON, found by (state, next_at) by the sweep.
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    url TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_by_owner ON webhooks (owner, created_at);
CREATE TABLE IF NOT EXISTS webhook_secrets (
    owner TEXT PRIMARY KEY,
    secret TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,        -- domain.webhooks.DeliveryState
    next_at REAL NOT NULL,
    created_at REAL NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL           -- the Delivery as JSON
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_at);
CREATE INDEX IF NOT EXISTS deliveries_by_owner ON deliveries (owner, created_at);
CREATE INDEX IF NOT EXISTS deliveries_by_subject ON deliveries (subject, created_at);
