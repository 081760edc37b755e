//! The REST surface of `docs/API.md`: submit, status, download, the chat routes' checks,
//! `/healthz`, `/metrics` and `/openapi.json`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ocr_core::{Document, FileKind, InputFile, RecognizeOptions};
use ocr_formats::{ExportOptions, Format, JobMeta};

use crate::auth::{self, Caller, Plan};
use crate::clock;
use crate::db::{JobRow, MessageRow, NewJob, now_ms};
use crate::error::ApiError;
use crate::jobs::{self, RunResult};
use crate::state::SharedState;
use ocr_chat::{Role, Turn};

/// The tools `tool=` accepts.
const TOOLS: [&str; 3] = ["extract-tables", "handwriting-to-text", "translate"];

/// The application: every route, without a socket (tests call it directly).
pub fn app(state: SharedState) -> Router {
    let upload_limit = state.config.max_upload_bytes as usize + (1 << 20);
    Router::new()
        .route("/api/v1/ocr/", post(submit))
        .route("/api/v1/ocr", post(submit))
        .route("/api/v1/ocr/{uuid}/", get(status))
        .route("/api/v1/ocr/{uuid}", get(status))
        .route("/api/v1/ocr/{uuid}/download/", get(download))
        .route("/api/v1/ocr/{uuid}/download", get(download))
        .route("/api/v1/chat/{uuid}/", post(chat))
        .route("/api/v1/chat/{uuid}", post(chat))
        .route("/api/v1/chat/{uuid}/history/", get(chat_history))
        .route("/api/v1/chat/{uuid}/history", get(chat_history))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(DefaultBodyLimit::max(upload_limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Logs every request and counts it in the metrics, by route pattern (never by uuid).
async fn observe(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .trim_end_matches('/')
        .to_string();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state
        .metrics
        .request(method.as_str(), &route, status, seconds);
    tracing::info!(%method, route, status, ms = (seconds * 1000.0) as u64, "request");
    response
}

fn peer_ip(extensions: &Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip())
}

/// Every API route starts by identifying its caller: an account, anonymous, or `401`.
impl FromRequestParts<SharedState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let ip = auth::client_ip(
            &parts.headers,
            peer_ip(&parts.extensions),
            state.config.trust_forwarded_for,
        );
        auth::identify(&state.db, &parts.headers, parts.uri.query(), ip).await
    }
}

/// A random (version 4) uuid.
fn new_uuid() -> String {
    let h = auth::random_hex(16);
    let variant = ["8", "9", "a", "b"][usize::from(h.as_bytes()[16] % 4)];
    format!(
        "{}-{}-4{}-{}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        variant,
        &h[17..20],
        &h[20..32]
    )
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The submitted form.
#[derive(Debug, Default)]
struct Form {
    file: Option<Vec<u8>>,
    tier: Option<String>,
    language: Option<String>,
    tool: Option<String>,
    translate_to: Option<String>,
}

async fn read_form(mut multipart: Multipart, max_bytes: u64) -> Result<Form, ApiError> {
    let mut form = Form::default();
    let malformed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(max_bytes)
        } else {
            ApiError::bad_request(format!("malformed multipart body: {}", e.body_text()))
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let mut bytes = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                if (bytes.len() + chunk.len()) as u64 > max_bytes {
                    return Err(too_large(max_bytes));
                }
                bytes.extend_from_slice(&chunk);
            }
            form.file = Some(bytes);
        } else {
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                if value.len() + chunk.len() > 1024 {
                    return Err(ApiError::bad_request(format!("field {name} is too long")));
                }
                value.extend_from_slice(&chunk);
            }
            let value = String::from_utf8(value)
                .map_err(|_| ApiError::bad_request(format!("field {name} is not UTF-8")))?
                .trim()
                .to_string();
            let slot = match name.as_str() {
                "tier" => &mut form.tier,
                "language" => &mut form.language,
                "tool" => &mut form.tool,
                "translate_to" => &mut form.translate_to,
                _ => continue,
            };
            *slot = (!value.is_empty()).then_some(value);
        }
    }
    Ok(form)
}

fn too_large(max_bytes: u64) -> ApiError {
    ApiError::bad_request(format!("file too large: the limit is {} bytes", max_bytes))
        .with("limit", max_bytes)
}

/// What the caller may spend: where the charge goes, the cap, the per-file page limit and the
/// queue priority.
struct Allowance {
    subject: String,
    period: String,
    cap: i64,
    max_pages: usize,
    priority: i64,
}

async fn allowance(state: &SharedState, caller: &Caller) -> Result<Allowance, ApiError> {
    let now = now_ms();
    let c = &state.config;
    Ok(match caller {
        Caller::Anonymous { ip } => Allowance {
            subject: format!("ip:{ip}"),
            period: clock::day(now),
            cap: c.anonymous.pages_per_day as i64,
            max_pages: c.anonymous.max_pages_per_file,
            priority: 0,
        },
        Caller::Account {
            id,
            plan: Plan::Free,
        } => Allowance {
            subject: format!("acc:{id}"),
            period: clock::month(now),
            cap: c.free.pages_per_month as i64,
            max_pages: c.free.max_pages_per_file,
            priority: 0,
        },
        Caller::Account {
            id,
            plan: Plan::Paid,
        } => {
            let credits = state.db.account(id).await?.map_or(0, |a| a.credits);
            Allowance {
                subject: format!("acc:{id}"),
                period: "credits".into(),
                cap: credits,
                max_pages: c.paid.max_pages_per_file,
                priority: 10,
            }
        }
    })
}

async fn submit(
    State(state): State<SharedState>,
    caller: Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let multipart = multipart.map_err(|e| {
        ApiError::bad_request(format!(
            "expected a multipart/form-data body with a file field: {}",
            e.body_text()
        ))
    })?;
    // Uploads are held in memory while read: bounded by the number read at once.
    let Ok(_slot) = state.inline_slots.clone().try_acquire_owned() else {
        return Err(ApiError::unavailable(
            "the server is busy; try again shortly",
            5,
        ));
    };
    let form = read_form(multipart, state.config.max_upload_bytes).await?;

    let tier = form.tier.as_deref().unwrap_or("cpu").to_ascii_lowercase();
    match tier.as_str() {
        "cpu" => {}
        "vlm" => {
            return Err(ApiError::bad_request(
                "tier vlm is not available on this server: it has no vision-language model \
                 installed; use tier cpu",
            )
            .with("supported", vec!["cpu"]));
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown tier {other:?}: expected cpu or vlm"
            ))
            .with("supported", vec!["cpu", "vlm"]));
        }
    }
    let tool = form.tool.as_deref().map(str::to_ascii_lowercase);
    let mut translate_to = None;
    match tool.as_deref() {
        None | Some("extract-tables") => {}
        Some("translate") => {
            let Some(target) = form.translate_to.as_deref() else {
                return Err(ApiError::bad_request(
                    "tool translate needs translate_to, the target language code",
                ));
            };
            let code = target.trim().to_ascii_lowercase();
            if ocr_chat::translate::language_name(&code).is_none() {
                return Err(ApiError::bad_request(format!(
                    "cannot translate into {target:?}: unsupported target language"
                ))
                .with("supported", ocr_chat::translate::supported_codes()));
            }
            if state.chat.generative().is_none() {
                return Err(ApiError::bad_request(
                    "tool translate needs the language model, which is not installed on this \
                     server",
                )
                .with("available", vec!["extract-tables"]));
            }
            translate_to = Some(code);
        }
        Some(t @ "handwriting-to-text") => {
            return Err(ApiError::bad_request(format!(
                "tool {t} needs the vlm tier, which is not available on this server"
            ))
            .with("available", vec!["extract-tables", "translate"]));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!("unknown tool {other:?}"))
                .with("tools", TOOLS.to_vec()));
        }
    }
    let language = form.language.as_deref().unwrap_or("auto").to_string();
    state
        .engine
        .check_options(&RecognizeOptions {
            language: Some(language.clone()),
            ..RecognizeOptions::default()
        })
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Some(bytes) = form.file else {
        return Err(ApiError::bad_request(
            "no file: send it in the multipart field \"file\"",
        ));
    };

    // Open the file (type sniffed from the bytes, pages counted, limits checked) before any
    // credit is reserved.
    let bytes: Arc<[u8]> = bytes.into();
    let decode = state.decode_options();
    let probe = bytes.clone();
    let page_count = tokio::task::spawn_blocking(move || probe_file(probe, decode))
        .await
        .map_err(|_| ApiError::bad_request("the file could not be read"))??;

    let allowance = allowance(&state, &caller).await?;
    if page_count > allowance.max_pages {
        return Err(ApiError::bad_request(format!(
            "the file has {page_count} pages; the limit per file is {}",
            allowance.max_pages
        ))
        .with("pages", page_count)
        .with("max_pages", allowance.max_pages));
    }
    // Translation takes the language model seconds per block: translated jobs always queue.
    let inline = page_count <= state.config.inline_pages && translate_to.is_none();
    if !inline && state.db.queue_depth().await? >= state.config.queue_capacity as i64 {
        return Err(ApiError::unavailable(
            "the job queue is full; try again later",
            30,
        ));
    }
    let cost_per_page = state.config.credits.cpu as i64;
    let uuid = new_uuid();
    let lease_id = auth::random_hex(16);
    let job = NewJob {
        uuid: uuid.clone(),
        account_id: caller.account_id().map(str::to_string),
        subject: allowance.subject,
        period: allowance.period,
        reserved: cost_per_page * page_count as i64,
        cost_per_page,
        tier,
        language,
        tool,
        translate_to,
        page_count: page_count as i64,
        priority: allowance.priority,
        inline_lease: inline.then(|| lease_id.clone()),
    };
    if !inline {
        let path = jobs::upload_path(&state, &uuid);
        let upload = bytes.clone();
        tokio::task::spawn_blocking(move || jobs::save_upload(&path, &upload))
            .await
            .map_err(anyhow::Error::from)??;
    }
    if let Some(used) = state.db.submit(&job, allowance.cap, state.lease()).await? {
        if !inline {
            let path = jobs::upload_path(&state, &uuid);
            let _ = tokio::task::spawn_blocking(move || jobs::delete_upload(&path)).await;
        }
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            format!(
                "not enough pages left: this file needs {}, {} of {} are used",
                job.reserved, used, allowance.cap
            ),
        )
        .with("used", used)
        .with("cap", allowance.cap)
        .with("needed", job.reserved));
    }
    tracing::info!(job = %uuid, pages = page_count, inline, "job submitted");

    if !inline {
        let row = state.db.job(&uuid).await?.ok_or_else(ApiError::not_found)?;
        state.queued.notify_one();
        return Ok((StatusCode::ACCEPTED, job_json(&state, &row).await?).into_response());
    }

    // Inline: read in a task of its own, so that a client hanging up does not stop the job
    // half-way (it finishes and is charged for what it read).
    let row = state.db.job(&uuid).await?.ok_or_else(ApiError::not_found)?;
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        if let RunResult::Finished(outcome) =
            jobs::run(&task_state, &row, &lease_id, bytes, false).await
        {
            jobs::finish(&task_state, &row, &lease_id, outcome).await;
        }
        task_state
            .metrics
            .stage("job", started.elapsed().as_secs_f64());
    });
    task.await.map_err(anyhow::Error::from)?;
    let row = state.db.job(&uuid).await?.ok_or_else(ApiError::not_found)?;
    Ok((StatusCode::OK, job_json(&state, &row).await?).into_response())
}

/// Sniffs and opens the file, counting its pages. Images are checked against the pixel limits
/// from their header before they are decoded, then decoded once to refuse a corrupt or
/// truncated file with `400` (a single image costs milliseconds to decode; its recognition,
/// seconds). Multi-page files are checked page by page as they are read.
fn probe_file(bytes: Arc<[u8]>, decode: ocr_core::DecodeOptions) -> Result<usize, ApiError> {
    let limits = decode.limits.clone();
    let file = InputFile::open(bytes.clone(), decode).map_err(|e| match e {
        ocr_core::Error::UnsupportedType(_) => ApiError::bad_request(
            "unsupported file type: send PNG, JPEG, WEBP, GIF, BMP, TIFF or PDF",
        ),
        other => ApiError::bad_request(other.to_string()),
    })?;
    if !matches!(file.kind(), FileKind::Pdf | FileKind::Tiff) {
        let dims = image::ImageReader::new(std::io::Cursor::new(&bytes[..]))
            .with_guessed_format()
            .ok()
            .and_then(|mut r| {
                // Only the header is read here; the engine's decoder enforces its own limits.
                r.no_limits();
                r.into_dimensions().ok()
            });
        let Some((w, h)) = dims else {
            return Err(ApiError::bad_request(format!(
                "corrupt {} file: its header cannot be read",
                file.kind().name()
            )));
        };
        limits
            .check_page_size(u64::from(w), u64::from(h))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        file.page(0, ocr_core::PageParts::IMAGE)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    Ok(file.page_count())
}

/// A job the caller may see: anonymous jobs to whoever has the uuid, an account's jobs to that
/// account only (`404` otherwise: existence is not leaked).
async fn visible_job(state: &SharedState, caller: &Caller, uuid: &str) -> Result<JobRow, ApiError> {
    if !is_uuid(uuid) {
        return Err(ApiError::not_found());
    }
    let job = state
        .db
        .job(&uuid.to_ascii_lowercase())
        .await?
        .ok_or_else(ApiError::not_found)?;
    match (&job.account_id, caller.account_id()) {
        (None, _) => Ok(job),
        (Some(owner), Some(me)) if owner == me => Ok(job),
        _ => Err(ApiError::not_found()),
    }
}

fn meta(state: &SharedState, job: &JobRow) -> JobMeta {
    JobMeta {
        uuid: job.uuid.clone(),
        status: Some(job.status.clone()),
        tier: job.tier.clone(),
        language: job.language.clone(),
        tool: job.tool.clone(),
        page_count: Some(job.page_count as usize),
        progress: job.progress as usize,
        error: job.error.clone(),
        created_at: Some(clock::rfc3339(job.created_at)),
        started_at: job.started_at.map(clock::rfc3339),
        finished_at: job.finished_at.map(clock::rfc3339),
        engine: state.engine_name.clone(),
    }
}

async fn document(state: &SharedState, job: &JobRow) -> Result<Option<Document>, ApiError> {
    let Some(json) = state.db.result_document(&job.uuid).await? else {
        return Ok(None);
    };
    let document: Document = serde_json::from_str(&json).map_err(anyhow::Error::from)?;
    Ok(Some(document))
}

/// Writes `document` (or an empty one) in `format` on a blocking thread: big documents take
/// a while to serialise.
async fn render(
    state: &SharedState,
    job: &JobRow,
    document: Option<Document>,
    format: Format,
) -> Result<Vec<u8>, ApiError> {
    let meta = meta(state, job);
    let tables_only = job.tool.as_deref() == Some("extract-tables");
    let out = tokio::task::spawn_blocking(move || {
        let document = document.unwrap_or_default();
        let mut out = Vec::new();
        let options = ExportOptions {
            pretty: false,
            images: None,
            job: Some(&meta),
            tables_only,
        };
        ocr_formats::export(&document, format, &options, &mut out).map(|()| out)
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(anyhow::Error::from)?;
    Ok(out)
}

async fn job_json(state: &SharedState, job: &JobRow) -> Result<Response, ApiError> {
    let document = document(state, job).await?;
    let mut body = render(state, job, document, Format::Json).await?;
    if let Some(translation) = translation_json(state, job).await? {
        let mut value: serde_json::Value =
            serde_json::from_slice(&body).map_err(anyhow::Error::from)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("translation".into(), translation);
        }
        body = serde_json::to_vec(&value).map_err(anyhow::Error::from)?;
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// The translated document of a `translate` job, if it has one.
async fn translated_document(
    state: &SharedState,
    job: &JobRow,
) -> Result<Option<(String, Document)>, ApiError> {
    if job.translate_to.is_none() {
        return Ok(None);
    }
    let Some((language, json)) = state.db.translation(&job.uuid).await? else {
        return Ok(None);
    };
    let document: Document = serde_json::from_str(&json).map_err(anyhow::Error::from)?;
    Ok(Some((language, document)))
}

/// *Beyond*: `translation` in the job JSON: `{language, text, markdown, pages: [{index, text,
/// markdown}]}`, the document's text and Markdown in the target language.
async fn translation_json(
    state: &SharedState,
    job: &JobRow,
) -> Result<Option<serde_json::Value>, ApiError> {
    let Some((language, document)) = translated_document(state, job).await? else {
        return Ok(None);
    };
    let value = tokio::task::spawn_blocking(move || -> anyhow::Result<serde_json::Value> {
        let text_of = |doc: &Document, format: Format| -> anyhow::Result<String> {
            let mut out = Vec::new();
            ocr_formats::export(doc, format, &ExportOptions::default(), &mut out)?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        };
        let mut pages = Vec::new();
        for page in &document.pages {
            let one = Document {
                pages: vec![page.clone()],
            };
            pages.push(serde_json::json!({
                "index": page.index,
                "text": page.text(),
                "markdown": text_of(&one, Format::Md)?,
            }));
        }
        Ok(serde_json::json!({
            "language": language,
            "text": text_of(&document, Format::Txt)?,
            "markdown": text_of(&document, Format::Md)?,
            "pages": pages,
        }))
    })
    .await
    .map_err(anyhow::Error::from)??;
    Ok(Some(value))
}

async fn status(
    State(state): State<SharedState>,
    Path(uuid): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &caller, &uuid).await?;
    job_json(&state, &job).await
}

async fn download(
    State(state): State<SharedState>,
    Path(uuid): Path<String>,
    caller: Caller,
    uri: Uri,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &caller, &uuid).await?;
    let requested = auth::query_param(uri.query(), "format").unwrap_or_else(|| "json".into());
    let format: Format = requested.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "unknown format {requested:?}: expected txt, md, docx, pdf, csv, json, hocr or alto"
        ))
    })?;
    if job.status == "pending" || job.status == "processing" {
        return Err(
            ApiError::new(StatusCode::CONFLICT, format!("the job is {}", job.status))
                .with("status", job.status),
        );
    }
    let translated = auth::query_param(uri.query(), "translated")
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    if translated {
        if !matches!(
            format,
            Format::Txt | Format::Md | Format::Docx | Format::Json
        ) {
            return Err(ApiError::bad_request(
                "a translation downloads as txt, md, docx or json",
            ));
        }
        let Some((language, document)) = translated_document(&state, &job).await? else {
            return Err(ApiError::bad_request(
                "this job has no translation: submit it with tool=translate and translate_to",
            ));
        };
        let body = render(&state, &job, Some(document), format).await?;
        let disposition = format!(
            "attachment; filename=\"{}.{language}.{}\"",
            job.uuid,
            format.file_suffix()
        );
        return Ok((
            [
                (header::CONTENT_TYPE, format.content_type().to_string()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            body,
        )
            .into_response());
    }
    let document = document(&state, &job).await?;
    if document.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the job failed and has no result: {}",
                job.error.as_deref().unwrap_or("unknown reason")
            ),
        )
        .with("status", job.status));
    }
    let body = match format {
        Format::Pdf => match state.db.result_pdf(&job.uuid).await? {
            Some(pdf) => pdf,
            None => render(&state, &job, document, format).await?,
        },
        _ => render(&state, &job, document, format).await?,
    };
    let disposition = format!(
        "attachment; filename=\"{}.{}\"",
        job.uuid,
        format.file_suffix()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// The chat routes' common checks: an account token (anonymous `401`), a job the account may
/// see (`404`), finished (`409`).
async fn chat_checks(
    state: &SharedState,
    caller: &Caller,
    uuid: &str,
) -> Result<(JobRow, String), ApiError> {
    let Some(account) = caller.account_id().map(str::to_string) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "chat needs an account token",
        ));
    };
    let job = visible_job(state, caller, uuid).await?;
    if job.status != "done" {
        return Err(
            ApiError::new(StatusCode::CONFLICT, format!("the job is {}", job.status))
                .with("status", job.status),
        );
    }
    Ok((job, account))
}

/// One conversation per job and account: its id is derived from both.
fn conversation_id(job: &str, account: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{job}:{account}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn message_json(row: &MessageRow) -> serde_json::Value {
    let citations: serde_json::Value =
        serde_json::from_str(&row.citations).unwrap_or_else(|_| serde_json::json!([]));
    serde_json::json!({
        "role": row.role,
        "content": row.content,
        "citations": citations,
        "created_at": clock::rfc3339(row.created_at),
    })
}

async fn chat(
    State(state): State<SharedState>,
    Path(uuid): Path<String>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (job, account) = chat_checks(&state, &caller, &uuid).await?;
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_default();
    let message = message.trim().to_string();
    if message.is_empty() {
        return Err(ApiError::bad_request(
            "send {\"message\": \"…\"} with a question",
        ));
    }
    if message.chars().count() > state.config.chat.max_message_chars {
        return Err(ApiError::bad_request(format!(
            "the message is too long: at most {} characters",
            state.config.chat.max_message_chars
        )));
    }
    let Ok(waiting) = state.chat.waiting.clone().try_acquire_owned() else {
        return Err(ApiError::unavailable(
            "too many questions are waiting; try again shortly",
            10,
        ));
    };
    let rows = state.db.messages(&job.uuid, &account).await?;
    let keep = state.config.chat.history_turns;
    let history: Vec<Turn> = rows
        .iter()
        .skip(rows.len().saturating_sub(keep))
        .map(|r| Turn {
            role: if r.role == "user" {
                Role::User
            } else {
                Role::Assistant
            },
            content: r.content.clone(),
        })
        .collect();
    let Some(document) = document(&state, &job).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the job has no recognised text",
        ));
    };
    let conversation = conversation_id(&job.uuid, &account);
    let stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let question = Turn {
        role: Role::User,
        content: message,
    };
    let (events, receiver) = tokio::sync::mpsc::unbounded_channel::<ChatEvent>();
    let task_state = state.clone();
    let task_conversation = conversation.clone();
    // The answer is produced and stored in a task of its own: a client that hangs up does not
    // lose the turn.
    let task = tokio::spawn(async move {
        let _waiting = waiting;
        let outcome = answer(
            &task_state,
            &job,
            &account,
            document,
            history,
            question,
            events.clone(),
        )
        .await;
        let _ = match outcome {
            Ok(reply) => events.send(ChatEvent::Done(serde_json::json!({
                "conversation": task_conversation,
                "answerer": task_state.chat.info.answerer,
                "message": {
                    "role": "assistant",
                    "content": reply.content,
                    "citations": reply.citations,
                },
            }))),
            Err(e) => events.send(ChatEvent::Failed(e)),
        };
    });
    if stream {
        return Ok(sse(receiver).into_response());
    }
    let _ = task.await;
    let mut receiver = receiver;
    while let Some(event) = receiver.recv().await {
        match event {
            ChatEvent::Delta(_) => {}
            ChatEvent::Done(value) => return Ok(axum::Json(value).into_response()),
            ChatEvent::Failed(e) => return Err(e),
        }
    }
    Err(ApiError::from(anyhow::anyhow!("the answer was lost")))
}

/// What the answering task tells the request.
enum ChatEvent {
    Delta(String),
    Done(serde_json::Value),
    Failed(ApiError),
}

/// Server-sent events: `delta` events with text as it is generated, then one `message` event
/// with the final reply (the same JSON as without streaming), or an `error` event.
fn sse(receiver: tokio::sync::mpsc::UnboundedReceiver<ChatEvent>) -> impl IntoResponse {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await? {
            ChatEvent::Delta(text) => Event::default()
                .event("delta")
                .json_data(serde_json::json!({ "text": text })),
            ChatEvent::Done(value) => Event::default().event("message").json_data(value),
            ChatEvent::Failed(e) => Event::default()
                .event("error")
                .json_data(serde_json::json!({ "error": e.message })),
        };
        let event = event.unwrap_or_else(|_| Event::default().event("error").data("{}"));
        Some((Ok::<_, std::convert::Infallible>(event), receiver))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Indexes the document (cached), answers on a blocking thread holding the model slot, and
/// stores the question with its answer.
async fn answer(
    state: &SharedState,
    job: &JobRow,
    account: &str,
    document: Document,
    history: Vec<Turn>,
    question: Turn,
    events: tokio::sync::mpsc::UnboundedSender<ChatEvent>,
) -> Result<ocr_chat::Reply, ApiError> {
    let asked_at = now_ms();
    let slot = state
        .chat
        .model_slot
        .clone()
        .acquire_owned()
        .await
        .map_err(anyhow::Error::from)?;
    let chat = state.chat.clone();
    let uuid = job.uuid.clone();
    let text = question.content.clone();
    let started = Instant::now();
    let reply = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let index = chat.index(&uuid, &document)?;
        chat.answerer()
            .answer(&index, chat.embedder(), &history, &text, &mut |delta| {
                let _ = events.send(ChatEvent::Delta(delta.to_string()));
            })
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(|e| {
        tracing::error!(job = %job.uuid, error = %e, "answering failed");
        ApiError::from(anyhow::Error::from(e))
    })?;
    state
        .metrics
        .stage("chat_answer", started.elapsed().as_secs_f64());
    let citations = serde_json::to_string(&reply.citations).map_err(anyhow::Error::from)?;
    state
        .db
        .add_exchange(
            &job.uuid,
            account,
            [
                &MessageRow {
                    role: "user".into(),
                    content: question.content,
                    citations: "[]".into(),
                    created_at: asked_at,
                },
                &MessageRow {
                    role: "assistant".into(),
                    content: reply.content.clone(),
                    citations,
                    created_at: now_ms(),
                },
            ],
        )
        .await?;
    tracing::info!(
        job = %job.uuid,
        answerer = state.chat.info.answerer,
        found = reply.found,
        citations = reply.citations.len(),
        seconds = started.elapsed().as_secs_f64(),
        "chat answered"
    );
    Ok(reply)
}

async fn chat_history(
    State(state): State<SharedState>,
    Path(uuid): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (job, account) = chat_checks(&state, &caller, &uuid).await?;
    let rows = state.db.messages(&job.uuid, &account).await?;
    Ok(axum::Json(serde_json::json!({
        "conversation": conversation_id(&job.uuid, &account),
        "messages": rows.iter().map(message_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn healthz(State(state): State<SharedState>) -> Response {
    let database = match state.db.backend() {
        crate::db::Backend::Sqlite => "sqlite",
        crate::db::Backend::Postgres => "postgres",
    };
    let (ok, queue) = match state.db.queue_depth().await {
        Ok(n) => (true, Some(n)),
        Err(e) => {
            tracing::error!(error = %e, "health check: the database does not answer");
            (false, None)
        }
    };
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "database": database,
        "database_ok": ok,
        "engine": state.engine_name,
        "queue_depth": queue,
        "chat": state.chat.info,
        "stopping": state.is_stopping(),
    });
    let code = if ok && !state.is_stopping() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let depth = state.db.queue_depth().await?;
    let in_flight = state.config.max_inline_requests - state.inline_slots.available_permits();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(depth, in_flight),
    )
        .into_response())
}

async fn openapi(State(state): State<SharedState>) -> Response {
    axum::Json(crate::openapi::document(&state.config)).into_response()
}
