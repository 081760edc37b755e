//! Storage: accounts, hashed tokens, the usage ledger, jobs (the persistent queue) and results,
//! in SQLite (embedded, one file, WAL) or PostgreSQL, through one set of portable SQL statements.
//!
//! Concurrency rules every statement here follows:
//! - a reservation of credits is one conditional `INSERT … ON CONFLICT DO UPDATE … WHERE` that
//!   either takes all the pages or none, so concurrent requests cannot overspend;
//! - a job is claimed by one conditional `UPDATE` (with `FOR UPDATE SKIP LOCKED` on PostgreSQL)
//!   that sets a fresh lease id; it is finished only by the holder of that lease, so a job whose
//!   server died and was picked up again is finished, and its unused credits released, once;
//! - transactions start with a write, so SQLite takes its write lock first and never has to
//!   upgrade a read lock (which fails at once instead of waiting).

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    credits BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS usage (
    subject TEXT NOT NULL,
    period TEXT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (subject, period)
);
CREATE TABLE IF NOT EXISTS ledger (
    id {serial},
    subject TEXT NOT NULL,
    period TEXT NOT NULL,
    job_uuid TEXT,
    delta BIGINT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    uuid TEXT PRIMARY KEY,
    account_id TEXT,
    subject TEXT NOT NULL,
    period TEXT NOT NULL,
    reserved BIGINT NOT NULL,
    cost_per_page BIGINT NOT NULL,
    charged BIGINT,
    status TEXT NOT NULL,
    tier TEXT NOT NULL,
    language TEXT NOT NULL,
    tool TEXT,
    page_count BIGINT NOT NULL,
    progress BIGINT NOT NULL DEFAULT 0,
    priority BIGINT NOT NULL,
    inline_job BIGINT NOT NULL,
    error TEXT,
    mean_confidence {double},
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    lease_id TEXT,
    lease_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, priority, created_at);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE TABLE IF NOT EXISTS results (
    uuid TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    pdf {blob}
);
CREATE TABLE IF NOT EXISTS translations (
    uuid TEXT PRIMARY KEY,
    language TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id {serial},
    job_uuid TEXT NOT NULL,
    account_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    citations TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (job_uuid, account_id, id);
";

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub uuid: String,
    pub account_id: Option<String>,
    pub subject: String,
    pub period: String,
    pub reserved: i64,
    pub cost_per_page: i64,
    pub charged: Option<i64>,
    pub status: String,
    pub tier: String,
    pub language: String,
    pub tool: Option<String>,
    pub page_count: i64,
    pub progress: i64,
    pub priority: i64,
    pub inline_job: bool,
    pub error: Option<String>,
    pub mean_confidence: Option<f64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub lease_id: Option<String>,
    pub attempts: i64,
    /// The `translate` tool's target language.
    pub translate_to: Option<String>,
}

const JOB_COLUMNS: &str = "uuid, account_id, subject, period, reserved, cost_per_page, charged, \
    status, tier, language, tool, page_count, progress, priority, inline_job, error, \
    mean_confidence, created_at, started_at, finished_at, lease_id, attempts, translate_to";

impl JobRow {
    fn from_row(r: &AnyRow) -> sqlx::Result<JobRow> {
        Ok(JobRow {
            uuid: r.try_get("uuid")?,
            account_id: r.try_get("account_id")?,
            subject: r.try_get("subject")?,
            period: r.try_get("period")?,
            reserved: r.try_get("reserved")?,
            cost_per_page: r.try_get("cost_per_page")?,
            charged: r.try_get("charged")?,
            status: r.try_get("status")?,
            tier: r.try_get("tier")?,
            language: r.try_get("language")?,
            tool: r.try_get("tool")?,
            page_count: r.try_get("page_count")?,
            progress: r.try_get("progress")?,
            priority: r.try_get("priority")?,
            inline_job: r.try_get::<i64, _>("inline_job")? != 0,
            error: r.try_get("error")?,
            mean_confidence: r.try_get("mean_confidence")?,
            created_at: r.try_get("created_at")?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
            lease_id: r.try_get("lease_id")?,
            attempts: r.try_get("attempts")?,
            translate_to: r.try_get("translate_to")?,
        })
    }
}

/// A new job to insert.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub uuid: String,
    pub account_id: Option<String>,
    pub subject: String,
    pub period: String,
    pub reserved: i64,
    pub cost_per_page: i64,
    pub tier: String,
    pub language: String,
    pub tool: Option<String>,
    pub translate_to: Option<String>,
    pub page_count: i64,
    pub priority: i64,
    /// Read inside the request: inserted already claimed under `lease`.
    pub inline_lease: Option<String>,
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: &'static str,
    pub error: Option<String>,
    /// Pages that failed: their credits are released.
    pub failed_pages: i64,
    pub mean_confidence: Option<f64>,
    /// The document as JSON and the searchable PDF; `None` for a job that produced nothing.
    pub document: Option<String>,
    pub pdf: Option<Vec<u8>>,
    /// The `translate` tool's result: the language code and the translated document as JSON.
    pub translation: Option<(String, String)>,
}

/// One stored turn of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub role: String,
    pub content: String,
    /// The citations as JSON (an array).
    pub citations: String,
    pub created_at: i64,
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: String,
    pub plan: String,
    pub credits: i64,
    pub created_at: i64,
}

/// A token's public record (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub id: String,
    pub account_id: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Db {
    /// Opens (creating on first start) the database at `url`: `sqlite://PATH?mode=rwc` or
    /// `postgres://…`.
    pub async fn open(url: &str) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database url {url:?}: expected sqlite:// or postgres://");
        };
        let options = AnyConnectOptions::from_str(url).context("parsing the database url")?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never wait for the writer. secure_delete: deleted rows
                        // (expired results) are overwritten, not left in free pages.
                        // busy_timeout: writers queue for the lock instead of failing.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA secure_delete = ON",
                            "PRAGMA busy_timeout = 30000",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to {}", redact(url)))?;
        let db = Db { pool, backend };
        db.migrate().await?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let (serial, double, blob) = match self.backend {
            Backend::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "REAL", "BLOB"),
            Backend::Postgres => ("BIGSERIAL PRIMARY KEY", "DOUBLE PRECISION", "BYTEA"),
        };
        let schema = SCHEMA
            .replace("{serial}", serial)
            .replace("{double}", double)
            .replace("{blob}", blob);
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // Two servers starting at once must not both create the tables.
            sqlx::query("SELECT pg_advisory_xact_lock(4242001)")
                .execute(&mut *tx)
                .await?;
        }
        for statement in schema.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("creating the schema: {statement}"))?;
        }
        // Columns added after the first release, for databases created before them.
        let has_translate_to = match self.backend {
            Backend::Sqlite => sqlx::query(
                "SELECT COUNT(*) AS n FROM pragma_table_info('jobs') WHERE name = 'translate_to'",
            )
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>("n")?
                > 0,
            Backend::Postgres => {
                sqlx::query(
                    "SELECT COUNT(*) AS n FROM information_schema.columns \
                     WHERE table_name = 'jobs' AND column_name = 'translate_to'",
                )
                .fetch_one(&mut *tx)
                .await?
                .try_get::<i64, _>("n")?
                    > 0
            }
        };
        if !has_translate_to {
            sqlx::query("ALTER TABLE jobs ADD COLUMN translate_to TEXT")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Checks the database answers (for `/healthz`).
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ----- accounts and tokens -----

    pub async fn create_account(&self, id: &str, plan: &str, credits: i64) -> anyhow::Result<()> {
        sqlx::query("INSERT INTO accounts (id, plan, credits, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(plan)
            .bind(credits)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn account(&self, id: &str) -> anyhow::Result<Option<Account>> {
        let row = sqlx::query("SELECT id, plan, credits, created_at FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| account_from_row(&r)).transpose()
    }

    pub async fn accounts(&self) -> anyhow::Result<Vec<Account>> {
        let rows =
            sqlx::query("SELECT id, plan, credits, created_at FROM accounts ORDER BY created_at")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(account_from_row).collect()
    }

    pub async fn set_plan(&self, id: &str, plan: &str) -> anyhow::Result<bool> {
        let r = sqlx::query("UPDATE accounts SET plan = $1 WHERE id = $2")
            .bind(plan)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Adds purchased credits; returns the new total, `None` for an unknown account.
    pub async fn add_credits(&self, id: &str, credits: i64) -> anyhow::Result<Option<i64>> {
        let row = sqlx::query(
            "UPDATE accounts SET credits = credits + $1 WHERE id = $2 RETURNING credits",
        )
        .bind(credits)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("credits")).transpose()?)
    }

    pub async fn insert_token(&self, id: &str, account_id: &str, hash: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO tokens (id, account_id, hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(account_id)
        .bind(hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The account and token hash of an unrevoked token with this hash.
    pub async fn token_by_hash(&self, hash: &str) -> anyhow::Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT account_id, hash FROM tokens WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("account_id")?, r.try_get("hash")?)))
            .transpose()?)
    }

    /// Revokes a token by its id; false when there is no such unrevoked token.
    pub async fn revoke_token(&self, id: &str) -> anyhow::Result<bool> {
        let r =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn tokens(&self, account_id: &str) -> anyhow::Result<Vec<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, account_id, created_at, revoked_at FROM tokens WHERE account_id = $1 \
             ORDER BY created_at",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenInfo {
                    id: r.try_get("id")?,
                    account_id: r.try_get("account_id")?,
                    created_at: r.try_get("created_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    // ----- metering -----

    /// Reserves the job's credits and inserts it, in one transaction: either the job exists
    /// with its credits reserved, or neither happened. The reservation is one conditional
    /// upsert that keeps the subject's use within `cap`. `Ok(None)` when the job was inserted;
    /// `Ok(Some(used))` (the use before this request) when it would not fit.
    pub async fn submit(
        &self,
        job: &NewJob,
        cap: i64,
        lease: Duration,
    ) -> anyhow::Result<Option<i64>> {
        if job.reserved > cap {
            return Ok(Some(self.used(&job.subject, &job.period).await?));
        }
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO usage (subject, period, used) VALUES ($1, $2, $3) \
             ON CONFLICT (subject, period) DO UPDATE SET used = usage.used + excluded.used \
             WHERE usage.used + excluded.used <= $4 RETURNING used",
        )
        .bind(&job.subject)
        .bind(&job.period)
        .bind(job.reserved)
        .bind(cap)
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_none() {
            tx.rollback().await?;
            return Ok(Some(self.used(&job.subject, &job.period).await?));
        }
        ledger(
            &mut tx,
            &job.subject,
            &job.period,
            &job.uuid,
            job.reserved,
            "reserve",
        )
        .await?;
        insert_job(&mut tx, job, lease).await?;
        tx.commit().await?;
        Ok(None)
    }

    /// Credits used by `subject` in `period`.
    pub async fn used(&self, subject: &str, period: &str) -> anyhow::Result<i64> {
        let row = sqlx::query("SELECT used FROM usage WHERE subject = $1 AND period = $2")
            .bind(subject)
            .bind(period)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("used")).transpose()?.unwrap_or(0))
    }

    /// Every usage bucket of `subject` (or of everyone), newest period first.
    pub async fn usage(&self, subject: Option<&str>) -> anyhow::Result<Vec<(String, String, i64)>> {
        let rows = match subject {
            Some(s) => {
                sqlx::query(
                    "SELECT subject, period, used FROM usage WHERE subject = $1 \
                     ORDER BY period DESC",
                )
                .bind(s)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT subject, period, used FROM usage ORDER BY period DESC, subject")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("subject")?,
                    r.try_get("period")?,
                    r.try_get("used")?,
                ))
            })
            .collect()
    }

    /// Sum of the ledger's entries for a job (what it is charged now).
    pub async fn ledger_total(&self, job_uuid: &str) -> anyhow::Result<i64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(delta), 0) AS BIGINT) AS total FROM ledger \
             WHERE job_uuid = $1",
        )
        .bind(job_uuid)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("total")?)
    }

    // ----- jobs -----

    pub async fn job(&self, uuid: &str) -> anyhow::Result<Option<JobRow>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE uuid = $1"))
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| JobRow::from_row(&r)).transpose()?)
    }

    /// Jobs waiting for a worker.
    pub async fn queue_depth(&self) -> anyhow::Result<i64> {
        let row =
            sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM jobs WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("n")?)
    }

    /// Claims the most urgent job: pending ones by priority then age, and jobs whose lease
    /// expired (their server stopped). Returns it with the new lease id set.
    pub async fn claim(&self, lease_id: &str, lease: Duration) -> anyhow::Result<Option<JobRow>> {
        let now = now_ms();
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'processing', lease_id = $1, lease_until = $2, \
             attempts = attempts + 1, progress = 0, started_at = COALESCE(started_at, $3) \
             WHERE uuid = (SELECT uuid FROM jobs WHERE status = 'pending' \
             OR (status = 'processing' AND lease_until < $4) \
             ORDER BY priority DESC, created_at, uuid LIMIT 1 {lock}) \
             RETURNING {JOB_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(lease_id)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| JobRow::from_row(&r)).transpose()?)
    }

    /// Extends a lease and records progress; false when the lease is no longer held.
    pub async fn renew(
        &self,
        uuid: &str,
        lease_id: &str,
        lease: Duration,
        progress: Option<i64>,
    ) -> anyhow::Result<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET lease_until = $1, progress = COALESCE($2, progress) \
             WHERE uuid = $3 AND lease_id = $4 AND status = 'processing'",
        )
        .bind(now_ms() + lease.as_millis() as i64)
        .bind(progress)
        .bind(uuid)
        .bind(lease_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Puts a claimed job back in the queue (graceful shutdown mid-job).
    pub async fn unclaim(&self, uuid: &str, lease_id: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE jobs SET status = 'pending', lease_id = NULL, lease_until = NULL, \
             progress = 0, attempts = attempts - 1 \
             WHERE uuid = $1 AND lease_id = $2 AND status = 'processing'",
        )
        .bind(uuid)
        .bind(lease_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records how a job ended, its results, and releases the credits of failed pages: all in
    /// one transaction and only while `lease_id` still holds the job. False (nothing written)
    /// when another worker has taken it over.
    pub async fn finish(
        &self,
        job: &JobRow,
        lease_id: &str,
        outcome: Outcome,
    ) -> anyhow::Result<bool> {
        let refund = (outcome.failed_pages * job.cost_per_page).clamp(0, job.reserved);
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE jobs SET status = $1, error = $2, finished_at = $3, charged = $4, \
             mean_confidence = $5, progress = page_count, lease_id = NULL, lease_until = NULL \
             WHERE uuid = $6 AND lease_id = $7 AND status = 'processing'",
        )
        .bind(outcome.status)
        .bind(&outcome.error)
        .bind(now_ms())
        .bind(job.reserved - refund)
        .bind(outcome.mean_confidence)
        .bind(&job.uuid)
        .bind(lease_id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(document) = &outcome.document {
            sqlx::query("INSERT INTO results (uuid, document, pdf) VALUES ($1, $2, $3)")
                .bind(&job.uuid)
                .bind(document)
                .bind(&outcome.pdf)
                .execute(&mut *tx)
                .await?;
        }
        if let Some((language, document)) = &outcome.translation {
            sqlx::query("INSERT INTO translations (uuid, language, document) VALUES ($1, $2, $3)")
                .bind(&job.uuid)
                .bind(language)
                .bind(document)
                .execute(&mut *tx)
                .await?;
        }
        if refund > 0 {
            let reason = if outcome.status == "failed" {
                "job failed"
            } else {
                "pages failed"
            };
            release_in(
                &mut tx,
                &job.subject,
                &job.period,
                refund,
                &job.uuid,
                reason,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn result_document(&self, uuid: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT document FROM results WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("document")).transpose()?)
    }

    pub async fn result_pdf(&self, uuid: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT pdf FROM results WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<Vec<u8>>, _>("pdf"))
            .transpose()?
            .flatten())
    }

    /// uuids of jobs not finished (their uploads must be kept).
    pub async fn unfinished_jobs(&self) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query("SELECT uuid FROM jobs WHERE status IN ('pending', 'processing')")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("uuid"))
            .collect::<sqlx::Result<_>>()?)
    }

    /// Deletes jobs (and their results) that finished before `cutoff_ms`; returns how many.
    pub async fn expire(&self, cutoff_ms: i64) -> anyhow::Result<u64> {
        let mut tx = self.pool.begin().await?;
        for statement in [
            "DELETE FROM results WHERE uuid IN (SELECT uuid FROM jobs WHERE finished_at < $1)",
            "DELETE FROM translations WHERE uuid IN (SELECT uuid FROM jobs WHERE finished_at < $1)",
            "DELETE FROM messages WHERE job_uuid IN (SELECT uuid FROM jobs WHERE finished_at < $1)",
        ] {
            sqlx::query(statement)
                .bind(cutoff_ms)
                .execute(&mut *tx)
                .await?;
        }
        let r = sqlx::query("DELETE FROM jobs WHERE finished_at < $1")
            .bind(cutoff_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// The translation of a job's document: its language and the document as JSON.
    pub async fn translation(&self, uuid: &str) -> anyhow::Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT language, document FROM translations WHERE uuid = $1")
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| -> sqlx::Result<_> { Ok((r.try_get("language")?, r.try_get("document")?)) })
            .transpose()?)
    }

    /// The conversation of an account about a job, oldest turn first.
    pub async fn messages(
        &self,
        job_uuid: &str,
        account_id: &str,
    ) -> anyhow::Result<Vec<MessageRow>> {
        let rows = sqlx::query(
            "SELECT role, content, citations, created_at FROM messages \
             WHERE job_uuid = $1 AND account_id = $2 ORDER BY id",
        )
        .bind(job_uuid)
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MessageRow {
                    role: r.try_get("role")?,
                    content: r.try_get("content")?,
                    citations: r.try_get("citations")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Appends a question and its answer to a conversation, together.
    pub async fn add_exchange(
        &self,
        job_uuid: &str,
        account_id: &str,
        turns: [&MessageRow; 2],
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        for turn in turns {
            sqlx::query(
                "INSERT INTO messages (job_uuid, account_id, role, content, citations, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(job_uuid)
            .bind(account_id)
            .bind(&turn.role)
            .bind(&turn.content)
            .bind(&turn.citations)
            .bind(turn.created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// SQLite: moves the write-ahead log into the database file and truncates it, so no old
    /// page image is left in the WAL. No-op on PostgreSQL.
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// Inserts a job: pending in the queue, or (inline) already claimed for `lease`.
async fn insert_job(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job: &NewJob,
    lease: Duration,
) -> anyhow::Result<()> {
    let now = now_ms();
    let (status, lease_until, started) = match &job.inline_lease {
        Some(_) => (
            "processing",
            Some(now + lease.as_millis() as i64),
            Some(now),
        ),
        None => ("pending", None, None),
    };
    sqlx::query(
        "INSERT INTO jobs (uuid, account_id, subject, period, reserved, cost_per_page, \
         status, tier, language, tool, page_count, priority, inline_job, created_at, \
         started_at, lease_id, lease_until, attempts, translate_to) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
         $19)",
    )
    .bind(&job.uuid)
    .bind(&job.account_id)
    .bind(&job.subject)
    .bind(&job.period)
    .bind(job.reserved)
    .bind(job.cost_per_page)
    .bind(status)
    .bind(&job.tier)
    .bind(&job.language)
    .bind(&job.tool)
    .bind(job.page_count)
    .bind(job.priority)
    .bind(i64::from(job.inline_lease.is_some()))
    .bind(now)
    .bind(started)
    .bind(&job.inline_lease)
    .bind(lease_until)
    .bind(i64::from(job.inline_lease.is_some()))
    .bind(&job.translate_to)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn account_from_row(r: &AnyRow) -> anyhow::Result<Account> {
    Ok(Account {
        id: r.try_get("id")?,
        plan: r.try_get("plan")?,
        credits: r.try_get("credits")?,
        created_at: r.try_get("created_at")?,
    })
}

async fn ledger(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    subject: &str,
    period: &str,
    job_uuid: &str,
    delta: i64,
    reason: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO ledger (subject, period, job_uuid, delta, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(subject)
    .bind(period)
    .bind(job_uuid)
    .bind(delta)
    .bind(reason)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn release_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    subject: &str,
    period: &str,
    amount: i64,
    job_uuid: &str,
    reason: &str,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE usage SET used = used - $1 WHERE subject = $2 AND period = $3")
        .bind(amount)
        .bind(subject)
        .bind(period)
        .execute(&mut **tx)
        .await?;
    ledger(tx, subject, period, job_uuid, -amount, reason).await
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..s], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
