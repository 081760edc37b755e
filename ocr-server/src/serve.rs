//! `ocr serve`: the HTTP server, its queue workers and sweeper, and a graceful shutdown that
//! finishes the requests in flight (inline jobs included) and returns queued work to the queue.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::api;
use crate::chat::ChatService;
use crate::config::Config;
use crate::db::{Db, redact};
use crate::jobs;
use crate::state::AppState;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data folder: the embedded database and queued uploads (default ./ocr-data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Configuration file (TOML; default DATA/ocr.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write logs as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OCR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn run(args: ServeArgs) -> ExitCode {
    init_logging(args.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "the server stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), args.data.as_deref(), args.listen)?;
    std::fs::create_dir_all(config.uploads_dir())
        .with_context(|| format!("creating the data folder {}", config.data.display()))?;
    let url = config.database_url();
    let db = Db::open(&url).await?;
    tracing::info!(database = redact(&url), "database ready");
    let engine_config = config.clone();
    let (engine, engine_name) =
        tokio::task::spawn_blocking(move || AppState::load_engine(&engine_config))
            .await?
            .context("loading the recognition models")?;
    tracing::info!(engine = engine_name, "models loaded");
    // The chat's models: installed from the package registry on first start, then loaded.
    let chat_config = config.chat.clone();
    let chat = tokio::task::spawn_blocking(move || ChatService::load(&chat_config)).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let state = Arc::new(
        AppState::new(config.clone(), db.clone(), engine, engine_name, stop_rx)
            .with_chat(Arc::new(chat)),
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let mut background = Vec::new();
    for _ in 0..config.workers {
        background.push(tokio::spawn(jobs::worker(state.clone())));
    }
    background.push(tokio::spawn(jobs::sweeper(state.clone())));
    tracing::info!(%addr, data = %config.data.display(), "listening");
    // The line scripts and tests wait for.
    println!("listening on http://{addr}");

    let app = api::app(state.clone());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop_tx.send(true);
    })
    .await?;
    for task in background {
        let _ = task.await;
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
