//! The server's settings: built-in defaults, then a TOML file, then `OCR_*` environment variables.
//!
//! Every key of [`Config`] can be set in the file (`--config FILE`, or `ocr.toml` in the data
//! folder when it exists) and by an environment variable named after its path: `OCR_LISTEN`,
//! `OCR_RETENTION_HOURS`, `OCR_FREE__PAGES_PER_MONTH` (a double underscore between table and key).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Folder for the embedded database and uploads waiting for the queue.
    pub data: PathBuf,
    /// `postgres://…` to share one PostgreSQL between servers; empty for the embedded SQLite
    /// database in the data folder.
    pub database_url: String,
    /// Hours a finished job's results stay available for status, download and chat.
    pub retention_hours: f64,
    /// Model size of the `cpu` tier: `small` or `tiny`.
    pub model: String,
    /// Resolution PDF pages are rendered at.
    pub dpi: f32,
    /// Jobs of at most this many pages are read inside the request; larger ones are queued.
    pub inline_pages: usize,
    /// Queued jobs worked at once by this server.
    pub workers: usize,
    /// Pages recognised at once (each page already uses every core).
    pub engine_slots: usize,
    /// Jobs waiting in the queue before submissions get `503`.
    pub queue_capacity: usize,
    /// Seconds a worker's claim on a job lasts without renewal; a job whose server died is
    /// picked up again after this.
    pub lease_seconds: u64,
    /// Times a job is started before it is failed as unprocessable.
    pub max_attempts: u32,
    /// Largest upload in bytes.
    pub max_upload_bytes: u64,
    /// Largest page in pixels (width × height).
    pub max_page_pixels: u64,
    /// Largest page width or height in pixels.
    pub max_page_dimension: u32,
    /// Seconds one page may take (decoding and recognition) before it fails.
    pub page_timeout_seconds: f64,
    /// Requests being read or recognised inline at once before new ones get `503`.
    pub max_inline_requests: usize,
    /// Take the client address for anonymous metering from `X-Forwarded-For` (only behind a
    /// proxy that sets it).
    pub trust_forwarded_for: bool,
    /// Credits one page costs on each tier.
    pub credits: Credits,
    pub anonymous: AnonymousPlan,
    pub free: FreePlan,
    pub paid: PaidPlan,
    /// The chat: its language model, embeddings, model store and limits.
    pub chat: crate::chat::ChatConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Credits {
    pub cpu: u64,
    pub vlm: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnonymousPlan {
    /// Credits per client address per UTC day.
    pub pages_per_day: u64,
    pub max_pages_per_file: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FreePlan {
    /// Credits per account per UTC calendar month.
    pub pages_per_month: u64,
    pub max_pages_per_file: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaidPlan {
    pub max_pages_per_file: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: PathBuf::from("ocr-data"),
            database_url: String::new(),
            retention_hours: 24.0 * 7.0,
            model: "small".into(),
            dpi: 200.0,
            inline_pages: 5,
            workers: 1,
            engine_slots: 1,
            queue_capacity: 1000,
            lease_seconds: 60,
            max_attempts: 3,
            max_upload_bytes: 50 << 20,
            max_page_pixels: 80_000_000,
            max_page_dimension: 30_000,
            page_timeout_seconds: 120.0,
            max_inline_requests: 32,
            trust_forwarded_for: false,
            credits: Credits::default(),
            anonymous: AnonymousPlan::default(),
            free: FreePlan::default(),
            paid: PaidPlan::default(),
            chat: crate::chat::ChatConfig::default(),
        }
    }
}

impl Default for Credits {
    fn default() -> Self {
        Self { cpu: 1, vlm: 5 }
    }
}

impl Default for AnonymousPlan {
    fn default() -> Self {
        Self {
            pages_per_day: 20,
            max_pages_per_file: 20,
        }
    }
}

impl Default for FreePlan {
    fn default() -> Self {
        Self {
            pages_per_month: 500,
            max_pages_per_file: 50,
        }
    }
}

impl Default for PaidPlan {
    fn default() -> Self {
        Self {
            max_pages_per_file: 1000,
        }
    }
}

impl Config {
    /// Defaults, overridden by `file` (or `DATA/ocr.toml` when no file is named and it exists),
    /// then by `OCR_*` environment variables, then by the explicit `data` and `listen` given on
    /// the command line.
    pub fn load(
        file: Option<&Path>,
        data: Option<&Path>,
        listen: Option<SocketAddr>,
    ) -> anyhow::Result<Config> {
        Self::load_with_env(file, data, listen, std::env::vars())
    }

    pub fn load_with_env(
        file: Option<&Path>,
        data: Option<&Path>,
        listen: Option<SocketAddr>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut value = toml::Table::try_from(Config::default())?;
        // Where the data folder is decides where the default config file is.
        let data_dir = data.map(Path::to_path_buf).or_else(|| {
            env.iter()
                .find(|(k, _)| k == "OCR_DATA")
                .map(|(_, v)| PathBuf::from(v))
        });
        let file = match file {
            Some(f) => Some(f.to_path_buf()),
            None => data_dir
                .as_ref()
                .unwrap_or(&Config::default().data)
                .join("ocr.toml")
                .canonicalize()
                .ok(),
        };
        if let Some(file) = file {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let overrides: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
            merge(&mut value, overrides);
        }
        for (key, raw) in &env {
            let Some(path) = key.strip_prefix("OCR_") else {
                continue;
            };
            let path: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            set_from_env(&mut value, &path, raw)
                .with_context(|| format!("environment variable {key}"))?;
        }
        let mut config: Config = value.try_into().context("invalid configuration")?;
        if let Some(d) = data {
            config.data = d.to_path_buf();
        }
        if let Some(l) = listen {
            config.listen = l;
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !matches!(self.model.as_str(), "small" | "tiny") {
            bail!("model must be small or tiny, not {:?}", self.model);
        }
        if self.workers == 0 || self.engine_slots == 0 || self.inline_pages == 0 {
            bail!("workers, engine_slots and inline_pages must be at least 1");
        }
        if self.lease_seconds < 2 {
            bail!("lease_seconds must be at least 2");
        }
        self.chat.validate()?;
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.page_timeout_seconds) || !positive(self.retention_hours) {
            bail!("page_timeout_seconds and retention_hours must be positive");
        }
        Ok(())
    }

    /// The database to open: the configured URL, or SQLite in the data folder.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.data.join("ocr.db").display())
        } else {
            self.database_url.clone()
        }
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.data.join("uploads")
    }
}

fn merge(base: &mut toml::Table, overrides: toml::Table) {
    for (k, v) in overrides {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets the key at `path` from an environment variable, typed like the default it replaces.
/// Variables naming no key (such as `OCR_TRACE`, which the engine reads) are left alone.
fn set_from_env(table: &mut toml::Table, path: &[String], raw: &str) -> anyhow::Result<()> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut t = table;
    for p in parents {
        match t.get_mut(p) {
            Some(toml::Value::Table(inner)) => t = inner,
            _ => return Ok(()),
        }
    }
    let Some(old) = t.get(last) else {
        return Ok(());
    };
    let new = match old {
        toml::Value::Integer(_) => toml::Value::Integer(raw.trim().parse()?),
        toml::Value::Float(_) => toml::Value::Float(raw.trim().parse()?),
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            other => bail!("expected true or false, not {other:?}"),
        }),
        toml::Value::Table(_) => bail!("names a table, not a value"),
        _ => toml::Value::String(raw.to_string()),
    };
    t.insert(last.clone(), new);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let dir = std::env::temp_dir().join(format!("ocr-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "retention_hours = 2.5\n[free]\npages_per_month = 7\n",
        )
        .unwrap();
        let c = Config::load_with_env(
            Some(&file),
            None,
            None,
            env(&[
                ("OCR_FREE__PAGES_PER_MONTH", "9"),
                ("OCR_WORKERS", "3"),
                ("OCR_TRACE", "1"),
                ("OCR_TRUST_FORWARDED_FOR", "yes"),
            ]),
        )
        .unwrap();
        assert_eq!(c.retention_hours, 2.5);
        assert_eq!(c.free.pages_per_month, 9);
        assert_eq!(c.workers, 3);
        assert!(c.trust_forwarded_for);
        assert_eq!(c.paid, PaidPlan::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        let e =
            Config::load_with_env(None, None, None, env(&[("OCR_WORKERS", "many")])).unwrap_err();
        assert!(format!("{e:#}").contains("OCR_WORKERS"), "{e:#}");
        let e = Config::load_with_env(None, None, None, env(&[("OCR_MODEL", "huge")])).unwrap_err();
        assert!(format!("{e:#}").contains("small or tiny"), "{e:#}");
    }
}
