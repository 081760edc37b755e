//! The REST contract through the router, without a socket: the status-code matrix, metering
//! under concurrency, downloads equal to the command line's output, uploads gone once their
//! job ends, retention. Runs on SQLite, or on PostgreSQL when `OCR_TEST_DATABASE_URL` names a
//! server (`.ci/run` runs the suite both ways).
#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ocr_core::{Engine, ModelSize};
use ocr_server::chat::{ChatConfig, ChatService};
use ocr_server::config::Config;
use ocr_server::db::Db;
use ocr_server::state::AppState;
use serde_json::Value;
use tokio::sync::watch;
use tower::ServiceExt;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(path),
    )
    .expect("fixture")
}

fn engine() -> (Engine, String) {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    let engine = ENGINE
        .get_or_init(|| Engine::load_default(ModelSize::Small).expect("models"))
        .clone();
    (engine, "ocr test (cpu, PP-OCRv6 small)".into())
}

/// A server on a fresh data folder (and a fresh database).
pub struct Server {
    pub app: Router,
    pub state: Arc<AppState>,
    pub dir: PathBuf,
    _stop: watch::Sender<bool>,
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ocr-test-{tag}-{}-{}",
        std::process::id(),
        ocr_server::auth::random_hex(4)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `OCR_TEST_DATABASE_URL` (a PostgreSQL server): a database of its own for each test.
async fn database_url(dir: &Path) -> String {
    match std::env::var("OCR_TEST_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!("ocr_test_{}", ocr_server::auth::random_hex(6));
            sqlx::any::install_default_drivers();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                .await
                .expect("connect to OCR_TEST_DATABASE_URL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create a test database");
            let (base, _) = admin.rsplit_once('/').expect("a database url with a path");
            format!("{base}/{name}")
        }
        _ => format!("sqlite://{}?mode=rwc", dir.join("ocr.db").display()),
    }
}

impl Server {
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Server {
        Server::start_with_chat(configure, None).await
    }

    /// A server whose chat is `chat` (the extractive answerer when `None`).
    pub async fn start_with_chat(
        configure: impl FnOnce(&mut Config),
        chat: Option<Arc<ChatService>>,
    ) -> Server {
        let dir = temp_dir("srv");
        let mut config = Config {
            data: dir.clone(),
            ..Config::default()
        };
        config.database_url = database_url(&dir).await;
        configure(&mut config);
        std::fs::create_dir_all(config.uploads_dir()).unwrap();
        let db = Db::open(&config.database_url()).await.expect("database");
        let (engine, name) = engine();
        let (stop, stopping) = watch::channel(false);
        let mut state = AppState::new(config, db, engine, name, stopping);
        if let Some(chat) = chat {
            state = state.with_chat(chat);
        }
        let state = Arc::new(state);
        for _ in 0..state.config.workers {
            tokio::spawn(ocr_server::jobs::worker(state.clone()));
        }
        Server {
            app: ocr_server::api::app(state.clone()),
            state,
            dir,
            _stop: stop,
        }
    }

    pub async fn account(&self, plan: &str, credits: i64) -> (String, String) {
        let id = format!("acc_{}", ocr_server::auth::random_hex(8));
        self.state
            .db
            .create_account(&id, plan, credits)
            .await
            .unwrap();
        let (secret, hash) = ocr_server::auth::new_token();
        let token_id = format!("tok_{}", ocr_server::auth::random_hex(6));
        self.state
            .db
            .insert_token(&token_id, &id, &hash)
            .await
            .unwrap();
        (id, secret)
    }

    pub async fn call(&self, request: Request<Body>) -> (StatusCode, Value, Vec<u8>) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json, bytes)
    }

    pub async fn submit(
        &self,
        token: Option<&str>,
        parts: &[(&str, &[u8])],
    ) -> (StatusCode, Value) {
        let (status, json, _) = self.call(submit_request(token, parts)).await;
        (status, json)
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> (StatusCode, Value, Vec<u8>) {
        let mut r = Request::get(path);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        self.call(r.body(Body::empty()).unwrap()).await
    }

    /// Polls a job until it is finished (at most a minute).
    pub async fn wait(&self, token: Option<&str>, uuid: &str) -> Value {
        self.wait_at_most(token, uuid, Duration::from_secs(60))
            .await
    }

    /// Polls a job until it is finished, failing the test after `limit`: a guard against a hang,
    /// not a speed check.
    pub async fn wait_at_most(&self, token: Option<&str>, uuid: &str, limit: Duration) -> Value {
        let polls = limit.as_millis() / 100;
        for _ in 0..polls {
            let (code, job, _) = self.get(token, &format!("/api/v1/ocr/{uuid}/")).await;
            assert_eq!(code, StatusCode::OK, "{job}");
            if job["status"] == "done" || job["status"] == "failed" {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {uuid} did not finish");
    }
}

pub fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----ocrtestboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        if *name == "file" {
            body.extend_from_slice(
                b"Content-Disposition: form-data; name=\"file\"; filename=\"upload.bin\"\r\n\
                  Content-Type: application/octet-stream\r\n\r\n",
            );
        } else {
            body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn submit_request(token: Option<&str>, parts: &[(&str, &[u8])]) -> Request<Body> {
    let (content_type, body) = multipart(parts);
    let mut r = Request::post("/api/v1/ocr/").header("content-type", content_type);
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body)).unwrap()
}

fn error_of(v: &Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {v}"))
}

/// A PNG header claiming `w`×`h` pixels, with a tiny body: a decompression bomb's shape.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&ihdr);
    png.extend_from_slice(&chunk);
    png.extend_from_slice(&crc32(&chunk).to_be_bytes());
    for (kind, data) in [
        (&b"IDAT"[..], &b"\x78\x9c\x03\x00\x00\x00\x00\x01"[..]),
        (b"IEND", b""),
    ] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(data);
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid PNG of the letter fixture with a text chunk carrying `marker` before IEND.
fn png_with_marker(marker: &str) -> Vec<u8> {
    let png = fixture("images/letter.png");
    let iend = png.len() - 12;
    let mut chunk = b"tEXt".to_vec();
    chunk.extend_from_slice(b"Comment\0");
    chunk.extend_from_slice(marker.as_bytes());
    let mut out = png[..iend].to_vec();
    out.extend_from_slice(&((chunk.len() - 4) as u32).to_be_bytes());
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    out.extend_from_slice(&png[iend..]);
    out
}

/// Every file under `dir` (database, its WAL, uploads, anything else) searched for `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_image_is_read_inside_the_request() {
    let s = Server::start(|_| {}).await;
    let (code, job) = s
        .submit(
            None,
            &[("file", &fixture("images/letter.png")), ("tier", b"cpu")],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "done");
    assert_eq!(job["page_count"], 1);
    assert_eq!(job["tier"], "cpu");
    assert!(
        job["text"].as_str().unwrap().contains("quick brown fox"),
        "{job}"
    );
    assert!(
        job["markdown"]
            .as_str()
            .unwrap()
            .contains("Payment reminder")
    );
    let block = &job["pages"][0]["blocks"][0];
    assert_eq!(block["bbox"].as_array().unwrap().len(), 4);
    assert!(
        block["lines"][0]["words"][0]["confidence"]
            .as_f64()
            .unwrap()
            > 0.5
    );
    let uuid = job["uuid"].as_str().unwrap();
    // The database the suite runs on is the one asked for.
    let (code, health, _) = s.get(None, "/healthz").await;
    assert_eq!(code, StatusCode::OK);
    let expected = match std::env::var("OCR_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => "postgres",
        _ => "sqlite",
    };
    assert_eq!(health["database"], expected, "{health}");
    // The status endpoint returns the same job.
    let (code, again, _) = s.get(None, &format!("/api/v1/ocr/{uuid}/")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(again, job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let s = Server::start(|_| {}).await;
    let png = fixture("images/letter.png");
    let (huge, big, encrypted) = (
        png_claiming(100_000, 100_000),
        png_claiming(20_000, 20_000),
        fixture("pdf/encrypted_user_password.pdf"),
    );
    type Case<'a> = (Vec<(&'a str, &'a [u8])>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("tier", b"cpu")], "no file"),
        (vec![("file", b"")], "empty file"),
        (
            vec![("file", b"hello, this is text")],
            "unsupported file type",
        ),
        (vec![("file", &png[..png.len() / 3])], "corrupt"),
        (vec![("file", &png), ("tier", b"gpu")], "unknown tier"),
        (
            vec![("file", &png), ("tier", b"vlm")],
            "tier vlm is not available",
        ),
        (vec![("file", &png), ("tool", b"summarise")], "unknown tool"),
        (
            vec![("file", &png), ("tool", b"translate")],
            "needs translate_to",
        ),
        (
            vec![
                ("file", &png),
                ("tool", b"translate"),
                ("translate_to", b"de"),
            ],
            "needs the language model",
        ),
        (
            vec![("file", &png), ("tool", b"handwriting-to-text")],
            "needs the vlm tier",
        ),
        (vec![("file", &png), ("language", b"tlh")], "tlh"),
        (vec![("file", &huge)], "exceeds the limit"),
        (vec![("file", &big)], "pixels per page"),
        (vec![("file", &encrypted)], "password"),
    ];
    for (parts, expected) in cases {
        let (code, body) = s.submit(None, &parts).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{expected}: {body}");
        assert!(
            error_of(&body).contains(expected),
            "{expected:?} not in {body}"
        );
    }
    // Not multipart at all, and a multipart body cut short.
    let r = Request::post("/api/v1/ocr/")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (code, body, _) = s.call(r).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    let (ct, mut body) = multipart(&[("file", &png)]);
    body.truncate(body.len() / 2);
    let r = Request::post("/api/v1/ocr/")
        .header("content-type", ct)
        .body(Body::from(body))
        .unwrap();
    let (code, body, _) = s.call(r).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_of(&body).contains("malformed"), "{body}");
    // Unknown routes and methods answer JSON too.
    let (code, body, _) = s.get(None, "/api/v1/nothing/").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_size_limit_are_refused() {
    let s = Server::start(|c| c.max_upload_bytes = 10_000).await;
    let (code, body) = s
        .submit(None, &[("file", &fixture("images/letter.png"))])
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_of(&body).contains("too large"), "{body}");
    assert_eq!(
        s.state
            .db
            .used(
                "ip:127.0.0.1",
                &ocr_server::clock::day(ocr_server::db::now_ms())
            )
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_ownership() {
    let s = Server::start(|_| {}).await;
    let (_, alice) = s.account("free", 0).await;
    let (bob_id, bob) = s.account("free", 0).await;
    let png = fixture("images/letter.png");
    let (code, job) = s.submit(Some(&alice), &[("file", &png)]).await;
    assert_eq!(code, StatusCode::OK, "{job}");
    let uuid = job["uuid"].as_str().unwrap().to_string();
    let status = format!("/api/v1/ocr/{uuid}/");
    // The owner, by header and by query parameter.
    assert_eq!(s.get(Some(&alice), &status).await.0, StatusCode::OK);
    let (code, _, _) = s.get(None, &format!("{status}?api_token={alice}")).await;
    assert_eq!(code, StatusCode::OK);
    // Someone else, or nobody: 404, never 403.
    assert_eq!(s.get(Some(&bob), &status).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get(None, &status).await.0, StatusCode::NOT_FOUND);
    let download = format!("{status}download/?format=txt");
    assert_eq!(s.get(Some(&bob), &download).await.0, StatusCode::NOT_FOUND);
    // Unknown, malformed and revoked tokens: 401 even where anonymous access is allowed.
    let unknown = ocr_server::auth::new_token().0;
    for bad in [unknown.as_str(), "ocr_short", "not-a-token"] {
        let (code, body, _) = s.get(Some(bad), &status).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(body["error"].is_string());
        assert_eq!(
            s.submit(Some(bad), &[("file", &png)]).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let tokens = s.state.db.tokens(&bob_id).await.unwrap();
    assert!(s.state.db.revoke_token(&tokens[0].id).await.unwrap());
    assert_eq!(
        s.get(
            Some(&bob),
            "/api/v1/ocr/00000000-0000-4000-8000-000000000000/"
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    // Unknown jobs.
    assert_eq!(
        s.get(None, "/api/v1/ocr/00000000-0000-4000-8000-000000000000/")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(None, "/api/v1/ocr/nope/").await.0,
        StatusCode::NOT_FOUND
    );
    // Chat needs an account and checks the message (answers: `chat_*` tests).
    let chat = |token: Option<&str>, body: &str| {
        let mut r = Request::post(format!("/api/v1/chat/{uuid}/"))
            .header("content-type", "application/json");
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.body(Body::from(body.to_string())).unwrap()
    };
    assert_eq!(
        s.call(chat(None, "{\"message\":\"hi\"}")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.call(chat(Some(&alice), "{}")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.call(chat(Some(&alice), "{\"message\":\"  \"}")).await.0,
        StatusCode::BAD_REQUEST
    );
}

/// `tool=extract-tables`: a table image's cells come back as a Markdown table, CSV rows and HTML
/// in the JSON, the same as `ocr recognize --tool extract-tables` gives; a letter without a
/// table says so in the JSON, the Markdown and the CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_tables_gives_the_tables_or_says_there_is_none() {
    let s = Server::start(|_| {}).await;
    let download = |uuid: String, format: &'static str| {
        let s = &s;
        async move {
            let (code, _, body) = s
                .get(
                    None,
                    &format!("/api/v1/ocr/{uuid}/download/?format={format}"),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "{format}");
            String::from_utf8(body).unwrap()
        }
    };

    let table = fixture("golden/table.png");
    let (code, job) = s
        .submit(None, &[("file", &table), ("tool", b"extract-tables")])
        .await;
    assert_eq!(code, StatusCode::OK, "{job}");
    assert_eq!(job["tool"], "extract-tables");
    assert_eq!(job["table_count"], 1, "{job}");
    assert!(job.get("notice").is_none());
    let md = job["markdown"].as_str().unwrap();
    assert!(md.starts_with("## Table 1 (page 1)"), "{md}");
    assert!(md.contains("| Alpha | 12.0 | 4.00 | n/a |"), "{md}");
    let html = job["pages"][0]["blocks"][0]["table"]["html"]
        .as_str()
        .unwrap();
    assert!(html.contains("colspan=\"2\""), "{html}");
    let uuid = job["uuid"].as_str().unwrap().to_string();
    let csv = download(uuid.clone(), "csv").await;
    assert!(csv.contains("Zeta,27.5,9.35,ok\r\n"), "{csv}");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_ocr"))
        .arg("recognize")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden/table.png"))
        .args(["--tool", "extract-tables", "--format", "md"])
        .output()
        .unwrap();
    assert!(cli.status.success());
    assert_eq!(
        String::from_utf8(cli.stdout).unwrap(),
        download(uuid, "md").await
    );

    let (code, job) = s
        .submit(
            None,
            &[
                ("file", &fixture("images/letter.png")),
                ("tool", b"extract-tables"),
            ],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{job}");
    assert_eq!(job["table_count"], 0, "{job}");
    assert_eq!(job["notice"], "no table was found in this document");
    assert_eq!(job["markdown"], "No table was found in this document.");
    // The text is still there for whoever wants it.
    assert!(job["text"].as_str().unwrap().contains("quick brown fox"));
    let uuid = job["uuid"].as_str().unwrap().to_string();
    assert_eq!(
        download(uuid, "csv").await,
        "note\r\nno table was found in this document\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_are_the_command_lines_bytes() {
    let s = Server::start(|_| {}).await;
    let dir = temp_dir("dl");
    for input in ["images/letter.png", "pdf/letter_3p.pdf"] {
        let bytes = fixture(input);
        let (code, job) = s.submit(None, &[("file", &bytes)]).await;
        assert_eq!(code, StatusCode::OK, "{job}");
        let uuid = job["uuid"].as_str().unwrap();
        for format in ["txt", "md", "json", "docx", "pdf", "csv", "hocr", "alto"] {
            let (code, _, body) = s
                .get(
                    None,
                    &format!("/api/v1/ocr/{uuid}/download/?format={format}"),
                )
                .await;
            assert_eq!(code, StatusCode::OK, "{input} {format}");
            let out = dir.join(format!("cli.{format}"));
            let status = std::process::Command::new(env!("CARGO_BIN_EXE_ocr"))
                .arg("recognize")
                .arg(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../fixtures")
                        .join(input),
                )
                .args(["--format", format, "-o"])
                .arg(&out)
                .status()
                .unwrap();
            assert!(status.success());
            let cli = std::fs::read(&out).unwrap();
            if format == "json" {
                // The server's job adds what it knows about the job; the rest is the same.
                let mut server: Value = serde_json::from_slice(&body).unwrap();
                let cli: Value = serde_json::from_slice(&cli).unwrap();
                assert_eq!(server["uuid"], uuid);
                for key in [
                    "uuid",
                    "tier",
                    "language",
                    "tool",
                    "progress",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "engine",
                ] {
                    server.as_object_mut().unwrap().remove(key);
                }
                assert_eq!(server, cli, "{input} json");
            } else {
                assert!(
                    body == cli,
                    "{input} {format}: the download differs from the CLI's output"
                );
            }
        }
        let (code, body, _) = s
            .get(None, &format!("/api/v1/ocr/{uuid}/download/?format=rtf"))
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert!(error_of(&body).contains("unknown format"));
    }
    let response = s
        .app
        .clone()
        .oneshot(
            Request::get(format!(
                "/api/v1/ocr/{}/download/?format=docx",
                s.submit(None, &[("file", &fixture("images/line.png"))])
                    .await
                    .1["uuid"]
                    .as_str()
                    .unwrap()
            ))
            .body(Body::empty())
            .unwrap(),
        )
        .await
        .unwrap();
    let headers = response.headers();
    assert_eq!(
        headers["content-type"],
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment; filename=\"") && disposition.ends_with(".docx\""));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn larger_files_are_queued_and_nothing_of_the_upload_remains() {
    let s = Server::start(|c| c.inline_pages = 2).await;
    let marker = format!("UPLOAD-MARKER-{}", ocr_server::auth::random_hex(16));
    // A born-digital PDF (3 pages: queued) with the marker in a comment, and an image.
    let mut pdf = fixture("pdf/letter_3p.pdf");
    pdf.extend_from_slice(format!("\n% {marker}\n").as_bytes());
    let (code, job) = s.submit(None, &[("file", &pdf)]).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{job}");
    // Queued; a worker polling the queue may already have claimed it when the reply is built.
    assert!(
        job["status"] == "pending" || job["status"] == "processing",
        "{job}"
    );
    let uuid = job["uuid"].as_str().unwrap().to_string();
    // While it waits, downloads are refused with 409 (unless it is already done).
    let (code, _, _) = s
        .get(None, &format!("/api/v1/ocr/{uuid}/download/?format=txt"))
        .await;
    assert!(
        code == StatusCode::CONFLICT || code == StatusCode::OK,
        "{code}"
    );
    let done = s.wait(None, &uuid).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["progress"], 3);
    assert!(done["text"].as_str().unwrap().contains("Chapter 2"));
    let (code, job) = s.submit(None, &[("file", &png_with_marker(&marker))]).await;
    assert_eq!(code, StatusCode::OK, "{job}");
    // "done" is committed before the queued upload is wiped, so give the wipe a moment.
    let wiped = std::time::Instant::now();
    while std::fs::read_dir(s.state.config.uploads_dir())
        .unwrap()
        .next()
        .is_some()
    {
        assert!(
            wiped.elapsed() < Duration::from_secs(30),
            "the upload is still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.state.db.checkpoint().await.unwrap();
    let found = files_containing(&s.dir, marker.as_bytes());
    assert!(
        found.is_empty(),
        "the upload's bytes are still in {found:?}"
    );
    // Results stay until their retention ends, then are gone.
    assert_eq!(
        s.get(None, &format!("/api/v1/ocr/{uuid}/")).await.0,
        StatusCode::OK
    );
    s.state
        .db
        .expire(ocr_server::db::now_ms() + 1)
        .await
        .unwrap();
    assert_eq!(
        s.get(None, &format!("/api/v1/ocr/{uuid}/")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    let s = Server::start(|c| {
        c.inline_pages = 1;
        c.queue_capacity = 0;
    })
    .await;
    let response = s
        .app
        .clone()
        .oneshot(submit_request(
            None,
            &[("file", &fixture("pdf/letter_3p.pdf"))],
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "30");
    // Nothing was charged.
    let used = s
        .state
        .db
        .used(
            "ip:127.0.0.1",
            &ocr_server::clock::day(ocr_server::db::now_ms()),
        )
        .await
        .unwrap();
    assert_eq!(used, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_overspend() {
    let s = Arc::new(
        Server::start(|c| {
            c.free.pages_per_month = 30;
            c.max_inline_requests = 100;
        })
        .await,
    );
    let (account, token) = s.account("free", 0).await;
    let png = fixture("images/line.png");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let s = s.clone();
        let token = token.clone();
        let png = png.clone();
        tasks.push(tokio::spawn(async move {
            s.submit(Some(&token), &[("file", &png)]).await
        }));
    }
    let mut done = 0;
    let mut refused = 0;
    for t in tasks {
        let (code, body) = t.await.unwrap();
        match code {
            StatusCode::OK => {
                assert_eq!(body["status"], "done", "{body}");
                done += 1;
            }
            StatusCode::PAYMENT_REQUIRED => {
                assert_eq!(body["cap"], 30, "{body}");
                assert!(body["used"].as_i64().unwrap() <= 30, "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((done, refused), (30, 70));
    let month = ocr_server::clock::month(ocr_server::db::now_ms());
    assert_eq!(
        s.state
            .db
            .used(&format!("acc:{account}"), &month)
            .await
            .unwrap(),
        30
    );
    // One more page is refused with the figures.
    let (code, body) = s.submit(Some(&token), &[("file", &png)]).await;
    assert_eq!(code, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        (body["used"].as_i64(), body["cap"].as_i64()),
        (Some(30), Some(30))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_accounts_spend_credits_and_failed_pages_are_released() {
    let s = Server::start(|_| {}).await;
    let (account, token) = s.account("paid", 5).await;
    // A 3-page PDF whose second page is fine and whose pages are all read: 3 credits.
    let (code, job) = s
        .submit(Some(&token), &[("file", &fixture("pdf/letter_3p.pdf"))])
        .await;
    assert_eq!(code, StatusCode::OK, "{job}");
    assert_eq!(
        s.state
            .db
            .used(&format!("acc:{account}"), "credits")
            .await
            .unwrap(),
        3
    );
    let (code, body) = s
        .submit(Some(&token), &[("file", &fixture("pdf/letter_3p.pdf"))])
        .await;
    assert_eq!(code, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert_eq!(
        (body["used"].as_i64(), body["cap"].as_i64()),
        (Some(3), Some(5))
    );
    // Pages that cannot be read are not charged: here every page of a PDF renders over the
    // pixel limit, so the job fails and its credits come back.
    let small = Server::start(|c| c.max_page_pixels = 10_000).await;
    let (account, token) = small.account("paid", 5).await;
    let (code, job) = small
        .submit(
            Some(&token),
            &[("file", &fixture("pdf/letter_3p.pdf")), ("tier", b"cpu")],
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap().contains("pixels"), "{job}");
    let uuid = job["uuid"].as_str().unwrap();
    assert_eq!(small.state.db.ledger_total(uuid).await.unwrap(), 0);
    assert_eq!(
        small
            .state
            .db
            .used(&format!("acc:{account}"), "credits")
            .await
            .unwrap(),
        0
    );
    // A failed job has nothing to download.
    let (code, _, _) = small
        .get(
            Some(&token),
            &format!("/api/v1/ocr/{uuid}/download/?format=txt"),
        )
        .await;
    assert!(code == StatusCode::CONFLICT || code == StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_openapi() {
    let s = Server::start(|_| {}).await;
    let (code, _) = s
        .submit(None, &[("file", &fixture("images/line.png"))])
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _, body) = s.get(None, "/metrics").await;
    assert_eq!(code, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    for expected in [
        "ocr_http_requests_total{method=\"POST\",route=\"/api/v1/ocr\",status=\"200\"} 1",
        "ocr_pages_total{outcome=\"done\"} 1",
        "ocr_jobs_total{outcome=\"done\"} 1",
        "ocr_stage_duration_seconds_count{stage=\"page\"} 1",
        "ocr_queue_depth 0",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    let (code, spec, _) = s.get(None, "/openapi.json").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/api/v1/ocr/",
        "/api/v1/ocr/{uuid}/",
        "/api/v1/ocr/{uuid}/download/",
        "/api/v1/chat/{uuid}/",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} not in the OpenAPI document"
        );
    }
    // Every $ref points at a schema the document defines.
    let text = spec.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(
            spec["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    let formats =
        &spec["paths"]["/api/v1/ocr/{uuid}/download/"]["get"]["parameters"][1]["schema"]["enum"];
    assert_eq!(formats.as_array().unwrap().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_work_goes_first_in_the_queue() {
    // No workers: the jobs stay queued until claimed here.
    let s = Server::start(|c| {
        c.workers = 0;
        c.inline_pages = 1;
    })
    .await;
    let (_, free) = s.account("free", 0).await;
    let (_, paid) = s.account("paid", 100).await;
    let pdf = fixture("pdf/letter_3p.pdf");
    let (code, anonymous_job) = s.submit(None, &[("file", &pdf)]).await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let (_, free_job) = s.submit(Some(&free), &[("file", &pdf)]).await;
    let (_, paid_job) = s.submit(Some(&paid), &[("file", &pdf)]).await;
    let lease = Duration::from_secs(60);
    let order: Vec<String> = [
        s.state.db.claim("a", lease).await.unwrap(),
        s.state.db.claim("b", lease).await.unwrap(),
        s.state.db.claim("c", lease).await.unwrap(),
    ]
    .into_iter()
    .map(|j| j.unwrap().uuid)
    .collect();
    assert_eq!(
        order,
        [&paid_job["uuid"], &anonymous_job["uuid"], &free_job["uuid"]]
            .map(|v| v.as_str().unwrap().to_string())
    );
    assert!(s.state.db.claim("d", lease).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_and_time_limits() {
    let s = Server::start(|c| c.anonymous.max_pages_per_file = 2).await;
    let (code, body) = s
        .submit(None, &[("file", &fixture("pdf/letter_3p.pdf"))])
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_of(&body).contains("limit per file is 2"), "{body}");
    // A page over the time limit fails with the reason, and is not charged.
    let s = Server::start(|c| c.page_timeout_seconds = 0.001).await;
    let (code, job) = s
        .submit(None, &[("file", &fixture("images/letter.png"))])
        .await;
    assert_eq!(code, StatusCode::OK, "{job}");
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("time limit"),
        "{job}"
    );
    let uuid = job["uuid"].as_str().unwrap();
    assert_eq!(s.state.db.ledger_total(uuid).await.unwrap(), 0);
}

fn chat_request(token: Option<&str>, uuid: &str, message: &str, stream: bool) -> Request<Body> {
    let mut r =
        Request::post(format!("/api/v1/chat/{uuid}/")).header("content-type", "application/json");
    if stream {
        r = r.header("accept", "text/event-stream");
    }
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(
        serde_json::json!({ "message": message }).to_string(),
    ))
    .unwrap()
}

/// Every citation of a reply is a literal substring of the page it names.
fn assert_grounded(job: &Value, message: &Value) {
    for c in message["citations"].as_array().unwrap() {
        let page = c["page"].as_u64().unwrap() as usize;
        let text = job["pages"][page - 1]["text"].as_str().unwrap();
        let snippet = c["snippet"].as_str().unwrap();
        assert!(text.contains(snippet), "{snippet:?} not on page {page}");
        assert_eq!(c["bbox"].as_array().unwrap().len(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_answers_from_the_document_and_keeps_one_conversation_per_account() {
    let s = Server::start(|_| {}).await;
    let (_, alice) = s.account("free", 0).await;
    let (_, bob) = s.account("free", 0).await;
    let (code, job) = s
        .submit(Some(&alice), &[("file", &fixture("images/letter.png"))])
        .await;
    assert_eq!(code, StatusCode::OK, "{job}");
    let uuid = job["uuid"].as_str().unwrap().to_string();

    let (code, reply, _) = s
        .call(chat_request(
            Some(&alice),
            &uuid,
            "What is the total amount?",
            false,
        ))
        .await;
    assert_eq!(code, StatusCode::OK, "{reply}");
    assert_eq!(reply["answerer"], "extractive");
    let conversation = reply["conversation"].as_str().unwrap().to_string();
    assert_eq!(conversation.len(), 32);
    let message = &reply["message"];
    assert_eq!(message["role"], "assistant");
    assert!(
        message["content"].as_str().unwrap().contains("1,234.50"),
        "{reply} {}",
        job["pages"][0]["text"]
    );
    assert_eq!(message["citations"][0]["page"], 1);
    assert_grounded(&job, message);

    // Not in the document: said so, nothing cited.
    let (code, reply, _) = s
        .call(chat_request(
            Some(&alice),
            &uuid,
            "Which ship carried the cargo to Lisbon?",
            false,
        ))
        .await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        reply["message"]["content"]
            .as_str()
            .unwrap()
            .contains("does not say"),
        "{reply}"
    );
    assert_eq!(reply["message"]["citations"], serde_json::json!([]));

    // Streamed: delta events, then the final message.
    let response = s
        .app
        .clone()
        .oneshot(chat_request(
            Some(&alice),
            &uuid,
            "When is the invoice due?",
            true,
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains("event: delta"), "{body}");
    let last = body
        .split("\n\n")
        .find(|e| e.starts_with("event: message"))
        .expect("a message event");
    let data: Value =
        serde_json::from_str(last.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(data["conversation"], conversation.as_str());
    assert!(
        data["message"]["content"]
            .as_str()
            .unwrap()
            .contains("15 March 2025"),
        "{data}"
    );

    // The transcript, in order, with citations.
    let (code, history, _) = s
        .get(Some(&alice), &format!("/api/v1/chat/{uuid}/history/"))
        .await;
    assert_eq!(code, StatusCode::OK, "{history}");
    assert_eq!(history["conversation"], conversation.as_str());
    let turns = history["messages"].as_array().unwrap();
    let roles: Vec<&str> = turns.iter().map(|t| t["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant"
        ]
    );
    assert_eq!(turns[0]["content"], "What is the total amount?");
    assert_eq!(turns[1]["citations"][0]["page"], 1);
    assert_eq!(turns[0]["citations"], serde_json::json!([]));

    // Someone else's job: 404 for chat and history.
    assert_eq!(
        s.call(chat_request(Some(&bob), &uuid, "What is the total?", false))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(Some(&bob), &format!("/api/v1/chat/{uuid}/history/"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // An anonymous job: every account has a conversation of its own about it.
    let (_, anonymous) = s
        .submit(None, &[("file", &fixture("images/letter.png"))])
        .await;
    let anon = anonymous["uuid"].as_str().unwrap();
    assert_eq!(
        s.call(chat_request(None, anon, "What is the total?", false))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (code, bobs, _) = s
        .call(chat_request(Some(&bob), anon, "What is the total?", false))
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_ne!(bobs["conversation"], conversation.as_str());
    let (_, alices, _) = s
        .get(Some(&alice), &format!("/api/v1/chat/{anon}/history/"))
        .await;
    assert_eq!(alices["messages"], serde_json::json!([]));
    let (_, bobs, _) = s
        .get(Some(&bob), &format!("/api/v1/chat/{anon}/history/"))
        .await;
    assert_eq!(bobs["messages"].as_array().unwrap().len(), 2);

    // Too long a question.
    let long = "why ".repeat(1000);
    let (code, e, _) = s
        .call(chat_request(Some(&alice), &uuid, &long, false))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(error_of(&e).contains("too long"));

    // A job still in the queue: 409.
    let (code, queued) = s
        .submit(Some(&alice), &[("file", &fixture("pdf/report_20p.pdf"))])
        .await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let queued = queued["uuid"].as_str().unwrap();
    let (code, e, _) = s
        .call(chat_request(Some(&alice), queued, "What is it?", false))
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{e}");

    // /healthz says which answerer is active.
    let (_, health, _) = s.get(None, "/healthz").await;
    assert_eq!(health["chat"]["answerer"], "extractive");
    assert_eq!(health["chat"]["translate"], false);

    // Expired results take the conversation with them.
    s.state
        .db
        .expire(ocr_server::db::now_ms() + 1)
        .await
        .unwrap();
    let account = s.state.db.messages(&uuid, "x").await.unwrap();
    assert!(account.is_empty());
    assert_eq!(
        s.get(Some(&alice), &format!("/api/v1/chat/{uuid}/history/"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn translation_requests_are_checked() {
    let s = Server::start(|_| {}).await;
    let (_, alice) = s.account("free", 0).await;
    let letter = fixture("images/letter.png");
    let (code, e) = s
        .submit(
            Some(&alice),
            &[
                ("file", &letter),
                ("tool", b"translate"),
                ("translate_to", b"xx"),
            ],
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["supported"]
            .as_array()
            .unwrap()
            .contains(&Value::from("fr")),
        "{e}"
    );
    // Without a language model (this server has the extractive answerer only).
    let (code, e) = s
        .submit(
            Some(&alice),
            &[
                ("file", &letter),
                ("tool", b"translate"),
                ("translate_to", b"fr"),
            ],
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{e}");
    assert!(error_of(&e).contains("language model"), "{e}");
    // A job without a translation has none to download.
    let (_, job) = s.submit(Some(&alice), &[("file", &letter)]).await;
    let uuid = job["uuid"].as_str().unwrap();
    let (code, e, _) = s
        .get(
            Some(&alice),
            &format!("/api/v1/ocr/{uuid}/download/?format=md&translated=1"),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{e}");
    assert!(job.get("translation").is_none());
}

/// The configured language model and embeddings, loaded once for the test binary (installed
/// into the model store from the package registry first if missing).
fn language_model() -> Arc<ChatService> {
    static CHAT: OnceLock<Arc<ChatService>> = OnceLock::new();
    CHAT.get_or_init(|| Arc::new(ChatService::load(&ChatConfig::default())))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_translation_with_the_language_model() {
    let chat = tokio::task::spawn_blocking(language_model).await.unwrap();
    assert_eq!(
        chat.info.answerer,
        ChatConfig::default().llm,
        "{:?}",
        chat.info.problems
    );
    assert!(
        chat.info.embeddings && chat.info.translate,
        "{:?}",
        chat.info
    );
    let s = Server::start_with_chat(|_| {}, Some(chat)).await;
    let (_, health, _) = s.get(None, "/healthz").await;
    assert_eq!(
        health["chat"]["answerer"],
        ChatConfig::default().llm.as_str()
    );
    let (_, alice) = s.account("paid", 100).await;
    let letter = fixture("images/letter.png");
    let (code, job) = s.submit(Some(&alice), &[("file", &letter)]).await;
    assert_eq!(code, StatusCode::OK, "{job}");
    let uuid = job["uuid"].as_str().unwrap().to_string();

    let ask = |q: &str| chat_request(Some(&alice), &uuid, q, false);
    let (code, reply, _) = s
        .call(ask("What is the total amount of the invoice?"))
        .await;
    assert_eq!(code, StatusCode::OK, "{reply}");
    let message = &reply["message"];
    assert!(
        message["content"].as_str().unwrap().contains("1,234.50"),
        "{reply}"
    );
    assert_eq!(message["citations"][0]["page"], 1, "{reply}");
    assert_grounded(&job, message);
    // A follow-up leaning on the previous question.
    let (_, reply, _) = s.call(ask("And when is it due?")).await;
    assert!(
        reply["message"]["content"]
            .as_str()
            .unwrap()
            .contains("15 March 2025"),
        "{reply}"
    );
    assert_grounded(&job, &reply["message"]);
    // Not in the document.
    let (_, reply, _) = s
        .call(ask("What is the name of the company's chief executive?"))
        .await;
    assert!(
        reply["message"]["content"]
            .as_str()
            .unwrap()
            .contains("does not say"),
        "{reply}"
    );
    assert_eq!(reply["message"]["citations"], serde_json::json!([]));
    let (_, history, _) = s
        .get(Some(&alice), &format!("/api/v1/chat/{uuid}/history/"))
        .await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 6);

    // The translate tool: queued, translated after recognition, offered for download.
    let (code, job) = s
        .submit(
            Some(&alice),
            &[
                ("file", &letter),
                ("tool", b"translate"),
                ("translate_to", b"fr"),
            ],
        )
        .await;
    assert_eq!(code, StatusCode::ACCEPTED, "{job}");
    let uuid = job["uuid"].as_str().unwrap().to_string();
    // Translating with the 1.5B model on two shared cores: minutes when the machine is busy.
    let job = s
        .wait_at_most(Some(&alice), &uuid, Duration::from_secs(900))
        .await;
    assert_eq!(job["status"], "done", "{job}");
    let translation = &job["translation"];
    assert_eq!(translation["language"], "fr", "{job}");
    let text = translation["text"].as_str().unwrap();
    assert!(text.contains("2024-117"), "{text}");
    assert_ne!(text, job["text"].as_str().unwrap());
    assert_eq!(translation["pages"].as_array().unwrap().len(), 1);
    let (code, _, md) = s
        .get(
            Some(&alice),
            &format!("/api/v1/ocr/{uuid}/download/?format=md&translated=1"),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        String::from_utf8(md).unwrap(),
        translation["markdown"].as_str().unwrap()
    );
}
