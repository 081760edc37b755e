//! What every request handler and worker shares.

use std::sync::Arc;
use std::time::Duration;

use ocr_core::{DecodeOptions, Engine, Limits, ModelSize};
use tokio::sync::{Notify, Semaphore, watch};

use crate::chat::ChatService;
use crate::config::Config;
use crate::db::Db;
use crate::metrics::Metrics;

#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub engine: Engine,
    /// `ocr 0.1.0 (cpu, PP-OCRv6 small)`: written into every job.
    pub engine_name: String,
    /// Pages being recognised at once, shared by inline requests and queue workers.
    pub engine_slots: Arc<Semaphore>,
    /// Submissions being read or recognised inline; when none is free, `503`.
    pub inline_slots: Arc<Semaphore>,
    /// Wakes the queue workers when a job is queued.
    pub queued: Notify,
    pub metrics: Metrics,
    /// Set when the server is shutting down: workers stop taking jobs.
    pub stopping: watch::Receiver<bool>,
    /// The chat's answerer, models and document indexes.
    pub chat: Arc<ChatService>,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// Loads the models (blocking: call from a blocking thread or before the runtime starts).
    pub fn load_engine(config: &Config) -> anyhow::Result<(Engine, String)> {
        let size: ModelSize = config
            .model
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        let engine = Engine::load_default(size)?;
        let name = format!(
            "ocr {} (cpu, PP-OCRv6 {})",
            env!("CARGO_PKG_VERSION"),
            config.model
        );
        Ok((engine, name))
    }

    pub fn new(
        config: Config,
        db: Db,
        engine: Engine,
        engine_name: String,
        stopping: watch::Receiver<bool>,
    ) -> AppState {
        AppState {
            chat: Arc::new(ChatService::extractive(&config.chat)),
            engine_slots: Arc::new(Semaphore::new(config.engine_slots)),
            inline_slots: Arc::new(Semaphore::new(config.max_inline_requests)),
            config,
            db,
            engine,
            engine_name,
            queued: Notify::new(),
            metrics: Metrics::default(),
            stopping,
        }
    }

    /// The same state with another chat service (the one [`ChatService::load`] built).
    pub fn with_chat(mut self, chat: Arc<ChatService>) -> AppState {
        self.chat = chat;
        self
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.config.lease_seconds)
    }

    pub fn page_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.config.page_timeout_seconds)
    }

    pub fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            dpi: self.config.dpi,
            limits: Limits {
                max_file_bytes: self.config.max_upload_bytes,
                max_page_pixels: self.config.max_page_pixels,
                max_page_dimension: self.config.max_page_dimension,
                page_timeout: self.page_timeout(),
                ..Limits::default()
            },
        }
    }

    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }
}
