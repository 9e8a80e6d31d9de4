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
-- The monitor's lists (ports.views), newest first, keyset on (created_at, rowid): one index
-- per filter that narrows (owner, status, both, workflow).
CREATE INDEX IF NOT EXISTS tasks_by_owner ON tasks (owner, created_at);
CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, created_at);
CREATE INDEX IF NOT EXISTS tasks_by_owner_status ON tasks (owner, status, created_at);
-- An owner's unended tasks and their jobs (domain.quota), read from the index alone.
CREATE INDEX IF NOT EXISTS tasks_usage ON tasks (owner, status, n_jobs);
CREATE INDEX IF NOT EXISTS tasks_by_workflow ON tasks (workflow_id, created_at)
    WHERE workflow_id IS NOT NULL;
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
CREATE INDEX IF NOT EXISTS workflows_by_owner ON workflows (owner, created_at);
CREATE INDEX IF NOT EXISTS workflows_by_status ON workflows (status, created_at);
CREATE INDEX IF NOT EXISTS workflows_by_owner_status ON workflows (owner, status, created_at);

-- A job's rowid is its key (keys.py: its task's number, then its index), given when stored.
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
    owner TEXT NOT NULL DEFAULT 'local',   -- the task's owner (fair share)
    max_rss_mb INTEGER,                    -- the payload's peak memory, as its pilot reported
    activated_at REAL                      -- its last change before its claim (set by it)
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_task ON jobs (task_id, idx);
-- A task's jobs by state, in index order, with their times: counts by state, the monitor's
-- job pages filtered by state, and a task's timeline and durations, all read from the index
-- alone (it replaces the narrower jobs_by_task_status of earlier versions).
DROP INDEX IF EXISTS jobs_by_task_status;
CREATE INDEX IF NOT EXISTS jobs_by_task_state ON jobs (task_id, status, idx, started_at, ended_at);
-- A task's jobs by error code (the job page's error filter).
CREATE INDEX IF NOT EXISTS jobs_by_task_error ON jobs (task_id, error_code, idx)
    WHERE error_code IS NOT NULL;
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

-- Jobs ended per minute (ports.views time windows), kept by triggers in the same transaction
-- as the change, whatever wrote it (a report, a sweep, a task-wide bulk): a window of a day
-- reads at most 1440 rows per state instead of every job that ended. A job whose final state
-- is undone (a user's retry) is taken out of its minute again. `minute` is the minute's start
-- (seconds since the epoch); error_code -1: none.
CREATE TABLE IF NOT EXISTS ends_by_minute (
    minute INTEGER NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (minute, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ends_by_owner (
    owner TEXT NOT NULL, minute INTEGER NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (owner, minute, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ends_by_task (
    task_id TEXT NOT NULL, minute INTEGER NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (task_id, minute, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fails_by_code (
    minute INTEGER NOT NULL, error_code INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (minute, error_code)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fails_by_owner_code (
    owner TEXT NOT NULL, minute INTEGER NOT NULL, error_code INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (owner, minute, error_code)
) WITHOUT ROWID;

-- Job dependencies, by the keys of their ends (keys.py: a job's key is its rowid, and follows
-- its task and index, so the edges of a task's jobs are neighbours). parent_status is NULL
-- while the parent has not ended, then its final status: a child is released when none of its
-- edges is NULL (one index seek per child). Earlier versions' `job_edges` (text ids) is
-- rewritten into it when a store first opens such a database (keys.migrate).
CREATE TABLE IF NOT EXISTS task_keys (
    k INTEGER PRIMARY KEY,      -- a job's key is (k << 32) | its index
    id TEXT NOT NULL UNIQUE     -- a task id (or NUL + a job id that is not a task's: keys.py)
);
CREATE TABLE IF NOT EXISTS job_links (
    parent INTEGER NOT NULL,
    child INTEGER NOT NULL,
    parent_status TEXT,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_links_by_child ON job_links (child, parent_status);

-- A job's attempts, keyed by the job's key (its rowid: keys.py), so a task's attempts are
-- neighbours (keyed by the scrambled job id, each claim and report wrote a random page).
-- Earlier versions' (keyed by job_id) is rewritten when a store first opens it (keys.migrate).
CREATE TABLE IF NOT EXISTS attempts (
    job INTEGER NOT NULL,
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
    max_rss_mb INTEGER,
    PRIMARY KEY (job, attempt)
) WITHOUT ROWID;
-- Attempts that ended with an error code, by job id (a task's are one range of job ids:
-- `<task id>-...`): the task's error summary reads only these.
CREATE INDEX IF NOT EXISTS attempts_errors ON attempts (job_id, error_code, ended_at)
    WHERE error_code IS NOT NULL;

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
CREATE INDEX IF NOT EXISTS pilots_by_status ON pilots (status);

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
    created_at REAL NOT NULL,
    subject TEXT                -- tasks/<id> or workflows/<id>; NULL: every one of the owner's
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
