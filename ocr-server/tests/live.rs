//! The server as a process, started as the README starts it (`ocr serve`, on a free port and a
//! data folder of its own): the API documentation's own clients (Python, Node, cURL) run
//! verbatim against it; a server killed with SIGKILL in the middle of a queued job finishes it
//! after a restart, exactly once and charged once; SIGTERM lets an inline request finish.
#![allow(clippy::unwrap_used)] // test helpers: a failure is a test failure

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ocr-live-{tag}-{}-{}",
        std::process::id(),
        ocr_server::auth::random_hex(4)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Process {
    child: Child,
    base: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ocr serve --listen 127.0.0.1:0 --data DATA`, waiting for its "listening on" line.
fn serve(data: &Path, env: &[(&str, &str)]) -> Process {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocr"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(url) = test_database() {
        cmd.env("OCR_DATABASE_URL", database_for(data, &url));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start ocr serve");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Process { child, base }
}

/// `OCR_TEST_DATABASE_URL`: a PostgreSQL server to run against instead of SQLite.
fn test_database() -> Option<String> {
    std::env::var("OCR_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// One PostgreSQL database per data folder, created on first use (the name is kept in the
/// folder so a restarted server finds the same one).
fn database_for(data: &Path, admin: &str) -> String {
    let marker = data.join("pg-database");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return url;
    }
    let name = format!("ocr_live_{}", ocr_server::auth::random_hex(6));
    let status = Command::new("psql")
        .arg(admin)
        .args(["-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql");
    assert!(status.success());
    let (base, _) = admin.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    std::fs::write(&marker, &url).unwrap();
    url
}

fn ocr(args: &[&str], data: &Path) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocr"));
    cmd.args(args).arg("--data").arg(data);
    if let Ok(url) = std::fs::read_to_string(data.join("pg-database")) {
        cmd.env("OCR_DATABASE_URL", url);
    } else if let Some(url) = test_database() {
        cmd.env("OCR_DATABASE_URL", database_for(data, &url));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "ocr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A paid account with `credits`: (id, token).
fn paid_account(data: &Path, credits: u64) -> (String, String) {
    let out = ocr(
        &[
            "accounts",
            "create",
            "--plan",
            "paid",
            "--credits",
            &credits.to_string(),
            "--json",
        ],
        data,
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    )
}

/// A minimal HTTP/1.1 exchange: (status, body).
fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response[split + 4..].to_vec())
}

fn submit(base: &str, token: &str, file: &[u8]) -> (u16, Value) {
    let (ct, body) = crate::server::multipart(&[("file", file), ("tier", b"cpu")]);
    let (status, body) = http(
        base,
        "POST",
        "/api/v1/ocr/",
        &[
            ("Content-Type", ct),
            ("Authorization", format!("Bearer {token}")),
        ],
        &body,
    );
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn job(base: &str, token: &str, uuid: &str) -> Value {
    let (status, body) = http(
        base,
        "GET",
        &format!("/api/v1/ocr/{uuid}/"),
        &[("Authorization", format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn tools() -> PathBuf {
    std::env::var_os("OCR_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/test-tools"))
}

#[test]
fn the_documentations_clients_run_verbatim() {
    let data = temp_dir("clients");
    let server = serve(&data, &[]);
    let (_, token) = paid_account(&data, 1000);
    let clients = root().join("../shared/docs/clients");
    let python = tools().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash tools/test-tools.sh`",
        python.display()
    );
    // A one-page image (answered inside the request) and a 20-page PDF (queued and polled).
    for (file, expected) in [
        ("images/letter.png", "Payment reminder"),
        ("pdf/report_20p.pdf", "Section 20"),
    ] {
        let path = root().join("fixtures").join(file);
        let work = temp_dir("client-run");
        let run = |program: &Path, script: &str| {
            let out = Command::new(program)
                .arg(clients.join(script))
                .current_dir(&work)
                .env("OCR_BASE", &server.base)
                .env("OCR_TOKEN", &token)
                .env("OCR_FILE", &path)
                .env("OCR_TIER", "cpu")
                .output()
                .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success(),
                "{script} on {file}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stdout
        };
        let py = run(&python, "client.py");
        assert!(py.contains(expected), "client.py on {file}: {py}");
        let docx = std::fs::read(work.join("result.docx")).unwrap();
        assert!(
            docx.starts_with(b"PK"),
            "client.py's result.docx is not a docx"
        );
        let node = run(Path::new("node"), "client.mjs");
        assert!(node.contains(expected), "client.mjs on {file}: {node}");
        assert_eq!(
            node.trim(),
            py.trim(),
            "the Node and Python clients print the same Markdown"
        );
        let sh = run(Path::new("bash"), "client.sh");
        let md = std::fs::read_to_string(work.join("result.md")).unwrap();
        assert!(
            md.contains(expected),
            "client.sh's result.md on {file}: {md}"
        );
        // Its chat calls: an answer from the language model, then the transcript.
        let mut replies = sh.lines().rev().take(2);
        let history: Value = serde_json::from_str(replies.next().unwrap()).unwrap();
        let reply: Value = serde_json::from_str(replies.next().unwrap()).unwrap();
        assert!(reply["conversation"].is_string(), "client.sh: {sh}");
        assert_eq!(reply["message"]["role"], "assistant", "client.sh: {sh}");
        assert!(
            !reply["message"]["citations"].as_array().unwrap().is_empty(),
            "an overview cites the document: {sh}"
        );
        let turns = history["messages"].as_array().unwrap();
        assert_eq!(turns.len(), 2, "client.sh: {sh}");
        assert_eq!(turns[0]["content"], "What is this document about?");
        std::fs::remove_dir_all(&work).ok();
    }
    std::fs::remove_dir_all(&data).ok();
}

#[test]
fn a_killed_server_finishes_its_job_after_restart_exactly_once() {
    let data = temp_dir("kill");
    let env = [
        ("OCR_LEASE_SECONDS", "2"),
        ("OCR_INLINE_PAGES", "1"),
        // No chat here: starts faster.
        ("OCR_CHAT__LLM", "none"),
        ("OCR_CHAT__EMBEDDINGS", "false"),
    ];
    let (account, token) = {
        let _first = serve(&data, &env);
        paid_account(&data, 100)
    };
    let mut server = serve(&data, &env);
    let pdf = std::fs::read(root().join("fixtures/pdf/report_20p.pdf")).unwrap();
    let (status, submitted) = submit(&server.base, &token, &pdf);
    assert_eq!(status, 202, "{submitted}");
    let uuid = submitted["uuid"].as_str().unwrap().to_string();
    // Kill it (SIGKILL: no chance to clean up) once it is a few pages in.
    let started = Instant::now();
    loop {
        let j = job(&server.base, &token, &uuid);
        if j["progress"].as_u64().unwrap_or(0) >= 2 {
            assert_eq!(j["status"], "processing");
            break;
        }
        assert!(j["status"] != "done", "finished before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(50));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let uploads = data.join("uploads");
    assert_eq!(
        std::fs::read_dir(&uploads).unwrap().count(),
        1,
        "the upload survives the crash"
    );

    let server = serve(&data, &env);
    let started = Instant::now();
    let done = loop {
        let j = job(&server.base, &token, &uuid);
        if j["status"] == "done" || j["status"] == "failed" {
            break j;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not finished: {j}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["progress"], 20);
    assert!(done["text"].as_str().unwrap().contains("Section 20"));
    // The outcome is committed before the upload is wiped (a crash in between must not lose
    // the job), so the file may outlive "done" by the time it takes to overwrite and sync it.
    let finished = Instant::now();
    while std::fs::read_dir(&uploads).unwrap().count() > 0 {
        assert!(
            finished.elapsed() < Duration::from_secs(30),
            "the upload is deleted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Charged once: 20 credits of the account's 100.
    let usage: Value =
        serde_json::from_str(&ocr(&["usage", "--account", &account, "--json"], &data)).unwrap();
    assert_eq!(usage[0]["used"], 20, "{usage}");
    drop(server);
    std::fs::remove_dir_all(&data).ok();
}

#[test]
fn sigterm_lets_an_inline_request_finish() {
    let data = temp_dir("term");
    let mut server = serve(
        &data,
        &[("OCR_CHAT__LLM", "none"), ("OCR_CHAT__EMBEDDINGS", "false")],
    );
    let (_, token) = paid_account(&data, 10);
    let base = server.base.clone();
    let png = std::fs::read(root().join("fixtures/images/letter.png")).unwrap();
    let request = std::thread::spawn(move || submit(&base, &token, &png));
    // Once the request is being worked on (the metrics say so), ask the server to stop.
    let started = Instant::now();
    loop {
        let (_, metrics) = http(&server.base, "GET", "/metrics", &[], b"");
        if String::from_utf8_lossy(&metrics).contains("ocr_inline_requests_in_flight 1") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the request never arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, job) = request.join().unwrap();
    assert_eq!(code, 200, "{job}");
    assert_eq!(job["status"], "done", "{job}");
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    std::fs::remove_dir_all(&data).ok();
}
