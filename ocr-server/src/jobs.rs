//! Running jobs: reading a file page by page on blocking threads, the persistent queue's
//! workers, uploads kept only while their job runs, and the retention sweeper.
//!
//! Recognition never runs on the async executor: each page is one `spawn_blocking` call that
//! holds an engine slot. A worker holds a lease on its job and renews it while it works; a job
//! whose server died is claimed again once the lease expires and is finished exactly once, by
//! whoever holds the lease at the end (`Db::finish`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ocr_core::{Document, InputFile, Page, PageOutcome, RecognizeOptions};
use ocr_formats::{ExportOptions, Format, PageImage, PageSources};

use crate::auth::random_hex;
use crate::db::{JobRow, Outcome, now_ms};
use crate::state::{AppState, SharedState};

/// How a run ended.
#[derive(Debug)]
pub enum RunResult {
    Finished(Outcome),
    /// The lease was lost or the server is stopping: nothing was written.
    Abandoned,
}

/// Reads every page of `bytes` for `job`. `stoppable`: give up between pages when the server
/// shuts down (queued jobs go back to the queue; inline jobs always finish).
pub async fn run(
    state: &SharedState,
    job: &JobRow,
    lease_id: &str,
    bytes: Arc<[u8]>,
    stoppable: bool,
) -> RunResult {
    let lost = Arc::new(AtomicBool::new(false));
    let heartbeat = tokio::spawn(heartbeat(
        state.clone(),
        job.uuid.clone(),
        lease_id.to_string(),
        lost.clone(),
    ));
    let result = read_pages(state, job, lease_id, bytes, stoppable, &lost).await;
    heartbeat.abort();
    result
}

/// Renews the lease every third of its length until aborted; marks it lost when another
/// worker has taken the job.
async fn heartbeat(state: SharedState, uuid: String, lease_id: String, lost: Arc<AtomicBool>) {
    let lease = state.lease();
    loop {
        tokio::time::sleep(lease / 3).await;
        match state.db.renew(&uuid, &lease_id, lease, None).await {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => tracing::warn!(job = %uuid, error = %e, "renewing a lease failed"),
        }
    }
}

fn failed(job: &JobRow, reason: String) -> Outcome {
    Outcome {
        status: "failed",
        error: Some(reason),
        failed_pages: job.page_count,
        mean_confidence: None,
        document: None,
        pdf: None,
        translation: None,
    }
}

async fn read_pages(
    state: &SharedState,
    job: &JobRow,
    lease_id: &str,
    bytes: Arc<[u8]>,
    stoppable: bool,
    lost: &AtomicBool,
) -> RunResult {
    let decode = state.decode_options();
    let source_pdf = bytes.starts_with(b"%PDF").then(|| bytes.to_vec());
    let opened = tokio::task::spawn_blocking(move || InputFile::open(bytes, decode)).await;
    let file = match opened {
        Ok(Ok(file)) => Arc::new(file),
        Ok(Err(e)) => return RunResult::Finished(failed(job, e.to_string())),
        Err(_) => return RunResult::Finished(failed(job, "the file could not be read".into())),
    };
    let options = Arc::new(RecognizeOptions {
        language: Some(job.language.clone()),
        extract_tables: job.tool.as_deref() == Some("extract-tables"),
        ..RecognizeOptions::default()
    });
    let count = file.page_count();
    let mut pages = Vec::with_capacity(count);
    let mut images = HashMap::new();
    for index in 0..count {
        if lost.load(Ordering::SeqCst) || (stoppable && state.is_stopping()) {
            return RunResult::Abandoned;
        }
        let (page, image) = read_page(state, &file, &options, index).await;
        state
            .metrics
            .page(if page.is_failed() { "failed" } else { "done" });
        if let Some(image) = image {
            images.insert(index, image);
        }
        pages.push(page);
        match state
            .db
            .renew(&job.uuid, lease_id, state.lease(), Some(index as i64 + 1))
            .await
        {
            Ok(true) => {}
            Ok(false) => return RunResult::Abandoned,
            Err(e) => tracing::warn!(job = %job.uuid, error = %e, "recording progress failed"),
        }
    }
    let document = Document { pages };
    let failed_pages = document.pages.iter().filter(|p| p.is_failed()).count() as i64;

    // The searchable PDF needs the page images, which are gone with the upload: built now.
    let started = Instant::now();
    let sources = PageSources {
        images,
        pdf: source_pdf,
    };
    let built = tokio::task::spawn_blocking(move || {
        let mut pdf = Vec::new();
        let options = ExportOptions {
            pretty: false,
            images: Some(&sources),
            job: None,
            tables_only: false,
        };
        let r = ocr_formats::export(&document, Format::Pdf, &options, &mut pdf);
        (document, r.map(|()| pdf))
    })
    .await;
    state.metrics.stage("pdf", started.elapsed().as_secs_f64());
    let (document, pdf) = match built {
        Ok((document, Ok(pdf))) => (document, Some(pdf)),
        Ok((document, Err(e))) => {
            tracing::error!(job = %job.uuid, error = %e, "building the searchable pdf failed");
            (document, None)
        }
        Err(_) => return RunResult::Finished(failed(job, "internal error".into())),
    };
    let all_failed = !document.pages.is_empty() && failed_pages == document.pages.len() as i64;
    let error = all_failed.then(|| {
        let reason = document
            .pages
            .iter()
            .find_map(|p| match &p.outcome {
                PageOutcome::Failed { reason } => Some(reason.as_str()),
                PageOutcome::Done { .. } => None,
            })
            .unwrap_or("");
        format!("no page could be read: {reason}")
    });
    let mean_confidence = document.mean_confidence().map(f64::from);
    let mut error = error;
    let mut translation = None;
    if let Some(target) = job.translate_to.as_deref().filter(|_| !all_failed) {
        match translate(state, job, &document, target, stoppable, lost).await {
            Ok(Some(translated)) => match serde_json::to_string(&sanitize(translated)) {
                Ok(json) => translation = Some((target.to_string(), json)),
                Err(e) => error = Some(format!("translation failed: {e}")),
            },
            Ok(None) => return RunResult::Abandoned,
            Err(e) => {
                tracing::warn!(job = %job.uuid, error = %e, "translation failed");
                error = Some(format!("translation failed: {e}"));
            }
        }
    }
    let json = match serde_json::to_string(&sanitize(document)) {
        Ok(json) => json,
        Err(e) => {
            tracing::error!(job = %job.uuid, error = %e, "storing the document failed");
            return RunResult::Finished(failed(job, "internal error".into()));
        }
    };
    RunResult::Finished(Outcome {
        status: if all_failed { "failed" } else { "done" },
        error,
        failed_pages,
        mean_confidence,
        document: Some(json),
        pdf,
        translation,
    })
}

/// The document translated page by page with the chat's language model, holding its slot for
/// each page. `Ok(None)`: the job was given up (lease lost, or stopping for a queued job).
async fn translate(
    state: &SharedState,
    job: &JobRow,
    document: &Document,
    target: &str,
    stoppable: bool,
    lost: &AtomicBool,
) -> anyhow::Result<Option<Document>> {
    let Some(model) = state.chat.generative().cloned() else {
        anyhow::bail!("no language model is installed on this server");
    };
    let started = Instant::now();
    let mut pages = Vec::with_capacity(document.pages.len());
    for page in &document.pages {
        if lost.load(Ordering::SeqCst) || (stoppable && state.is_stopping()) {
            return Ok(None);
        }
        let _slot = state.chat.model_slot.clone().acquire_owned().await?;
        let model = model.clone();
        let page = page.clone();
        let target = target.to_string();
        let translated = tokio::task::spawn_blocking(move || {
            ocr_chat::translate::translate_page(&model, &page, &target)
        })
        .await??;
        pages.push(translated);
    }
    state
        .metrics
        .stage("translate", started.elapsed().as_secs_f64());
    tracing::info!(job = %job.uuid, target, pages = pages.len(), "translated");
    Ok(Some(Document { pages }))
}

/// One page on a blocking thread, holding an engine slot; a page over the time limit fails
/// (its thread finishes in the background, still holding the slot, so the CPU is never
/// oversubscribed).
async fn read_page(
    state: &SharedState,
    file: &Arc<InputFile>,
    options: &Arc<RecognizeOptions>,
    index: usize,
) -> (Page, Option<PageImage>) {
    let Ok(permit) = state.engine_slots.clone().acquire_owned().await else {
        return (Page::failed(index, "the server is shutting down"), None);
    };
    let started = Instant::now();
    let engine = state.engine.clone();
    let file = file.clone();
    let options = options.clone();
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let (page, image) = engine.recognize_page_with_image(&file, index, &options);
        let image = image.and_then(|i| PageImage::encode(&i).ok());
        (page, image)
    });
    let limit = state.page_timeout();
    let result = match tokio::time::timeout(limit, task).await {
        Ok(Ok(done)) => done,
        Ok(Err(_)) => (
            Page::failed(index, "internal error while reading the page"),
            None,
        ),
        Err(_) => (
            Page::failed(
                index,
                format!(
                    "page took longer than the time limit of {:.0} s",
                    limit.as_secs_f64()
                ),
            ),
            None,
        ),
    };
    state.metrics.stage("page", started.elapsed().as_secs_f64());
    result
}

/// Non-finite numbers cannot be stored as JSON: they become 0, as the JSON export writes them.
fn sanitize(mut document: Document) -> Document {
    fn fix(v: &mut f32) {
        if !v.is_finite() {
            *v = 0.0;
        }
    }
    fn fix_box(b: &mut ocr_core::BBox) {
        fix(&mut b.x0);
        fix(&mut b.y0);
        fix(&mut b.x1);
        fix(&mut b.y1);
    }
    for page in &mut document.pages {
        fix(&mut page.dpi);
        for block in &mut page.blocks {
            fix_box(&mut block.bbox);
            for line in &mut block.lines {
                fix_box(&mut line.bbox);
                fix(&mut line.confidence);
                for word in &mut line.words {
                    fix_box(&mut word.bbox);
                    fix(&mut word.confidence);
                }
            }
            if let Some(table) = &mut block.table {
                for cell in &mut table.cells {
                    fix_box(&mut cell.bbox);
                }
            }
        }
    }
    document
}

// ----- uploads -----

pub fn upload_path(state: &AppState, uuid: &str) -> PathBuf {
    state.config.uploads_dir().join(uuid)
}

/// Writes an upload for the queue, durably (a crash after the job is queued must not lose it).
pub fn save_upload(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("upload path")?;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("part");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Deletes an upload so that none of its bytes stay in the data folder: overwritten with
/// zeros and synced before it is unlinked.
pub fn delete_upload(path: &Path) -> anyhow::Result<()> {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(mut f) => {
            let len = f.metadata()?.len();
            let zeros = vec![0u8; 1 << 16];
            let mut left = len;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_all()?;
            drop(f);
            std::fs::remove_file(path)?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

// ----- the queue -----

/// A queue worker: claims jobs until the server stops.
pub async fn worker(state: SharedState) {
    let mut stopping = state.stopping.clone();
    loop {
        if state.is_stopping() {
            return;
        }
        let lease_id = random_hex(16);
        match state.db.claim(&lease_id, state.lease()).await {
            Ok(Some(job)) => work(&state, job, &lease_id).await,
            Ok(None) => {
                // Other servers sharing the database queue jobs too: poll now and then.
                tokio::select! {
                    () = state.queued.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stopping.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "claiming a job failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn work(state: &SharedState, job: JobRow, lease_id: &str) {
    state.metrics.stage(
        "queue_wait",
        (now_ms() - job.created_at).max(0) as f64 / 1000.0,
    );
    let path = upload_path(state, &job.uuid);
    let outcome = if job.attempts > i64::from(state.config.max_attempts) {
        RunResult::Finished(failed(
            &job,
            format!(
                "the job was interrupted {} times and is given up",
                job.attempts - 1
            ),
        ))
    } else {
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                tracing::info!(job = %job.uuid, pages = job.page_count, "job started");
                let started = Instant::now();
                let r = run(state, &job, lease_id, bytes.into(), true).await;
                state.metrics.stage("job", started.elapsed().as_secs_f64());
                r
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RunResult::Finished(failed(
                &job,
                "the server stopped while reading this file; please submit it again".into(),
            )),
            Err(e) => {
                tracing::error!(job = %job.uuid, error = %e, "reading the upload failed");
                RunResult::Finished(failed(&job, "internal error".into()))
            }
        }
    };
    match outcome {
        RunResult::Finished(outcome) => finish(state, &job, lease_id, outcome).await,
        RunResult::Abandoned => {
            if state.is_stopping() {
                if let Err(e) = state.db.unclaim(&job.uuid, lease_id).await {
                    tracing::warn!(job = %job.uuid, error = %e, "returning a job to the queue failed");
                }
                tracing::info!(job = %job.uuid, "job returned to the queue: shutting down");
            } else {
                tracing::warn!(job = %job.uuid, "lease lost: another worker has the job");
            }
        }
    }
}

/// Records the outcome (once: only the lease holder can) and deletes the upload.
pub async fn finish(state: &SharedState, job: &JobRow, lease_id: &str, outcome: Outcome) {
    let status = outcome.status;
    let error = outcome.error.clone();
    match state.db.finish(job, lease_id, outcome).await {
        Ok(true) => {
            state
                .metrics
                .job(if status == "done" { "done" } else { "failed" });
            tracing::info!(job = %job.uuid, status, error = error.as_deref().unwrap_or(""), "job finished");
            let path = upload_path(state, &job.uuid);
            if let Err(e) = tokio::task::spawn_blocking(move || delete_upload(&path))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r)
            {
                tracing::error!(job = %job.uuid, error = %e, "deleting the upload failed");
            }
        }
        Ok(false) => tracing::warn!(job = %job.uuid, "lease lost before finishing"),
        Err(e) => {
            tracing::error!(job = %job.uuid, error = format!("{e:#}"), "finishing a job failed")
        }
    }
}

/// Deletes expired results and uploads no unfinished job needs; runs at start and then every
/// minute.
pub async fn sweeper(state: SharedState) {
    let mut stopping = state.stopping.clone();
    loop {
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = format!("{e:#}"), "sweeping failed");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stopping.changed() => return,
        }
    }
}

pub async fn sweep(state: &SharedState) -> anyhow::Result<()> {
    let retention = (state.config.retention_hours * 3_600_000.0) as i64;
    let expired = state.db.expire(now_ms() - retention).await?;
    if expired > 0 {
        tracing::info!(expired, "expired results deleted");
    }
    let keep: std::collections::HashSet<String> =
        state.db.unfinished_jobs().await?.into_iter().collect();
    let dir = state.config.uploads_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let uuid = name.trim_end_matches(".part");
        let partial = name.ends_with(".part");
        // An upload is written before its job is inserted: a young file may be about to get
        // one; a crash between the two leaves a file no job will ever read.
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default())
            .unwrap_or(Duration::MAX);
        if !keep.contains(uuid) && age > Duration::from_secs(if partial { 3600 } else { 300 }) {
            delete_upload(&entry.path())?;
        }
    }
    state.db.checkpoint().await?;
    Ok(())
}
