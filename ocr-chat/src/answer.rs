//! Answerers: from a question and the document's best chunks to a reply whose every citation is
//! a literal substring of the page it names.
//!
//! Two answerers share the retrieval and the citation rules:
//! - [`Generative`]: a small instruction-tuned model sees only the numbered excerpts (and the
//!   earlier turns) and is asked to answer briefly, marking the excerpts it used as `[n]`, or to
//!   say `NOT FOUND`. Its citations are never its own words: each cited excerpt contributes the
//!   sentence of the page that best supports the answer. An answer with a number that none of the
//!   excerpts contains is treated as invented and becomes a refusal.
//! - [`Extractive`]: the sentence of the best chunks that covers most of the question's rare
//!   terms (and, with embeddings, is closest in meaning), quoted with its page; when too little of
//!   the question is covered, it says the document does not answer it.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::ChatError;
use crate::embed::Embedder;
use crate::index::{DocIndex, Hit};
use crate::llm::{Llm, Message};
use crate::text::{normalize, numbers, sentences, terms};

/// What a reply says when the document does not answer the question.
pub const NOT_IN_DOCUMENT: &str =
    "The document does not say: I found no answer to that in its text.";

/// One piece of evidence: a literal substring of a page's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// 1-based page number.
    pub page: usize,
    pub snippet: String,
    /// The box around the page lines the snippet spans, in page pixels `[x0, y0, x1, y1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f32; 4]>,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub content: String,
    pub citations: Vec<Citation>,
    /// False when the reply says the document does not answer the question.
    pub found: bool,
}

impl Reply {
    fn not_found() -> Self {
        Self {
            content: NOT_IN_DOCUMENT.into(),
            citations: Vec::new(),
            found: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

/// Turns a question into a reply grounded in the document.
pub trait Answerer: Send + Sync {
    /// What is answering, for `/healthz`, logs and benchmarks.
    fn name(&self) -> String;

    /// Answers `question` from `index`, seeing the earlier turns of the conversation. `on_text`
    /// receives the reply's text as it is produced (all of it at once for answerers that do not
    /// stream); the returned reply is final and may differ (a refusal replaces an answer whose
    /// evidence failed the checks).
    fn answer(
        &self,
        index: &DocIndex,
        embedder: Option<&Embedder>,
        history: &[Turn],
        question: &str,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Reply, ChatError>;
}

/// The text retrieval searches with: the question, and for a follow-up that leans on an
/// earlier turn ("and when is it due?", "who signed it?") the previous question too, so that it
/// keeps its subject.
pub fn retrieval_query(history: &[Turn], question: &str) -> String {
    let previous = history
        .iter()
        .rev()
        .find(|t| t.role == Role::User)
        .map(|t| t.content.as_str());
    let leans_back = terms(question).len() <= 1
        || question.split(|c: char| !c.is_alphanumeric()).any(|w| {
            matches!(
                w.to_lowercase().as_str(),
                "it" | "its"
                    | "they"
                    | "them"
                    | "their"
                    | "he"
                    | "she"
                    | "him"
                    | "her"
                    | "his"
                    | "that"
                    | "those"
                    | "these"
                    | "there"
            )
        });
    match previous {
        Some(prev) if leans_back => format!("{question} {prev}"),
        _ => question.to_string(),
    }
}

/// Whether a question asks about the document as a whole ("what is this about?", "summarise
/// the letter"): then the beginning of the document answers, not a search.
pub fn is_overview(question: &str) -> bool {
    const GENERIC: &[&str] = &[
        "summary",
        "summarise",
        "summarize",
        "overview",
        "gist",
        "topic",
        "main",
        "point",
        "subject",
        "purpose",
        "page",
        "text",
        "file",
        "letter",
        "report",
        "brief",
        "briefly",
        "short",
        "content",
        "describe",
        "give",
        "provide",
        "write",
        "explain",
        "quick",
    ];
    let content = terms(question);
    let n = normalize(question);
    let cue = n.split(|c: char| !c.is_alphanumeric()).any(|w| {
        matches!(
            w,
            "about" | "summary" | "summarise" | "summarize" | "overview" | "gist" | "describe"
        )
    });
    content.is_empty() || (cue && content.iter().all(|t| GENERIC.contains(&t.as_str())))
}

/// A chunk as a hit with no score (the opening of the document, or excerpts already chosen).
fn unscored(chunk: usize) -> Hit {
    Hit {
        chunk,
        score: 0.0,
        bm25: 0.0,
        cosine: None,
    }
}

/// The first chunks of the document, in reading order, as search hits.
fn opening(index: &DocIndex, n: usize) -> Vec<Hit> {
    (0..index.chunks.len().min(n)).map(unscored).collect()
}

/// A sentence of a page: its page position in the index and byte range.
#[derive(Debug, Clone, Copy)]
struct Span {
    page: usize,
    start: usize,
    end: usize,
}

/// The sentences of the given chunks, each once, as page ranges.
fn candidate_sentences(index: &DocIndex, hits: &[Hit]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for hit in hits {
        let chunk = &index.chunks[hit.chunk];
        let text = index.chunk_text(chunk);
        for (s, e) in sentences(text) {
            let span = Span {
                page: chunk.page,
                start: chunk.start + s,
                end: chunk.start + e,
            };
            if !out
                .iter()
                .any(|o| o.page == span.page && o.start == span.start && o.end == span.end)
            {
                out.push(span);
            }
        }
    }
    out
}

fn span_text<'a>(index: &'a DocIndex, span: &Span) -> &'a str {
    &index.pages[span.page].text[span.start..span.end]
}

/// The citation for a range of a page, after checking that it is a literal substring of it.
fn citation(index: &DocIndex, span: &Span) -> Option<Citation> {
    let page = &index.pages[span.page];
    let snippet = page.text.get(span.start..span.end)?.to_string();
    if snippet.trim().is_empty() || !page.text.contains(&snippet) {
        return None;
    }
    let bbox = index
        .bbox_of(span.page, span.start, span.end)
        .map(|b| [b.x0, b.y0, b.x1, b.y1]);
    Some(Citation {
        page: page.number,
        snippet,
        bbox,
    })
}

/// Keeps only citations whose snippet is a literal substring of the cited page, repairing a
/// snippet that differs from the page only in spacing or case by the page's own text; drops
/// duplicates. Every reply passes through this before it leaves the crate.
pub fn verify_citations(index: &DocIndex, citations: Vec<Citation>) -> Vec<Citation> {
    let mut out: Vec<Citation> = Vec::new();
    for c in citations {
        let Some(page) = index.page(c.page) else {
            continue;
        };
        let fixed = if page.text.contains(&c.snippet) {
            Some(c)
        } else {
            find_loosely(&page.text, &c.snippet).map(|(s, e)| Citation {
                page: c.page,
                snippet: page.text[s..e].to_string(),
                bbox: c.bbox,
            })
        };
        if let Some(c) = fixed
            && !out
                .iter()
                .any(|o| o.page == c.page && o.snippet == c.snippet)
        {
            out.push(c);
        }
    }
    out
}

/// The byte range of `haystack` equal to `needle` up to case and runs of whitespace.
fn find_loosely(haystack: &str, needle: &str) -> Option<(usize, usize)> {
    let target = normalize(needle);
    if target.is_empty() {
        return None;
    }
    // Normalised haystack with a map back to byte offsets.
    let mut norm = String::new();
    let mut map = Vec::new();
    let mut space = false;
    for (i, c) in haystack.char_indices() {
        if c.is_whitespace() {
            space = !norm.is_empty();
            continue;
        }
        if space {
            norm.push(' ');
            map.push(i);
            space = false;
        }
        for l in normalize(&c.to_string()).chars() {
            norm.push(l);
            for _ in 0..l.len_utf8() {
                map.push(i);
            }
        }
    }
    let at = norm.find(&target)?;
    let start = *map.get(at)?;
    let last = *map.get(at + target.len() - 1)?;
    let end = last + haystack[last..].chars().next()?.len_utf8();
    Some((start, end))
}

/// The extractive answerer: quotes the best sentence.
#[derive(Debug, Clone, Default)]
pub struct Extractive;

/// The share of the question's rare terms (by idf) that a sentence contains.
fn coverage(index: &DocIndex, question_terms: &[String], sentence: &str) -> f32 {
    let have = terms(sentence);
    let mut unique = question_terms.to_vec();
    unique.sort();
    unique.dedup();
    let total: f32 = unique.iter().map(|t| index.idf(t)).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let got: f32 = unique
        .iter()
        .filter(|t| have.contains(t))
        .map(|t| index.idf(t))
        .sum();
    got / total
}

impl Answerer for Extractive {
    fn name(&self) -> String {
        "extractive".into()
    }

    fn answer(
        &self,
        index: &DocIndex,
        embedder: Option<&Embedder>,
        history: &[Turn],
        question: &str,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Reply, ChatError> {
        if is_overview(question) {
            let spans = candidate_sentences(index, &opening(index, 1));
            let Some(first) = spans.first() else {
                on_text(NOT_IN_DOCUMENT);
                return Ok(Reply::not_found());
            };
            // The opening sentences, up to about 300 bytes.
            let mut span = *first;
            for next in spans.iter().skip(1) {
                if next.end - span.start > 300 {
                    break;
                }
                span.end = next.end;
            }
            return Ok(quote(index, &span, "begins", on_text));
        }
        let query = retrieval_query(history, question);
        let hits = index.search(&query, 5, embedder)?;
        let spans = candidate_sentences(index, &hits);
        if spans.is_empty() {
            on_text(NOT_IN_DOCUMENT);
            return Ok(Reply::not_found());
        }
        // Coverage counts the question's own terms when it has some of its own.
        let qterms = match terms(question) {
            own if own.len() >= 2 => own,
            _ => terms(&query),
        };
        let cov: Vec<f32> = spans
            .iter()
            .map(|s| coverage(index, &qterms, span_text(index, s)))
            .collect();
        let cos: Option<Vec<f32>> = match embedder {
            Some(e) => {
                let mut texts = vec![query.as_str()];
                texts.extend(spans.iter().map(|s| span_text(index, s)));
                let v = e.embed(&texts)?;
                Some(v[1..].iter().map(|s| dot(&v[0], s)).collect())
            }
            None => None,
        };
        let score = |i: usize| cov[i] + cos.as_ref().map_or(0.0, |c| 0.5 * c[i]);
        let best = (0..spans.len())
            .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
            .unwrap_or(0);
        let close = cos.as_ref().is_some_and(|c| c[best] >= 0.6);
        let found = cov[best] >= 0.5 || (close && cov[best] >= 0.25);
        if !found {
            on_text(NOT_IN_DOCUMENT);
            return Ok(Reply::not_found());
        }
        // A short sentence ("TOTAL") takes the next one on the page with it ("42.00").
        let mut span = spans[best];
        let words = span_text(index, &span).split_whitespace().count();
        if words < 8
            && let Some(next) = spans
                .iter()
                .filter(|s| s.page == span.page && s.start >= span.end)
                .min_by_key(|s| s.start)
            && next.start - span.end <= 2
        {
            span.end = next.end;
        }
        Ok(quote(index, &span, "says", on_text))
    }
}

/// "Page 2 says: “…”", citing the span.
fn quote(index: &DocIndex, span: &Span, verb: &str, on_text: &mut dyn FnMut(&str)) -> Reply {
    let Some(cite) = citation(index, span) else {
        on_text(NOT_IN_DOCUMENT);
        return Reply::not_found();
    };
    let quoted = cite
        .snippet
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let content = format!("Page {} {verb}: \u{201C}{quoted}\u{201D}", cite.page);
    on_text(&content);
    Reply {
        content,
        citations: verify_citations(index, vec![cite]),
        found: true,
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The generative answerer's default budget for excerpts, in characters (about four per token).
pub const EXCERPT_CHARS: usize = 2400;

/// The excerpts the model reads for `question`: chunk positions and their text, in the order
/// the prompt gives them, within `budget` characters.
pub fn excerpts<'a>(
    index: &'a DocIndex,
    embedder: Option<&Embedder>,
    history: &[Turn],
    question: &str,
    budget: usize,
) -> Result<Vec<(usize, &'a str)>, ChatError> {
    let hits = if is_overview(question) {
        opening(index, 6)
    } else {
        index.search(&retrieval_query(history, question), 6, embedder)?
    };
    // Excerpts in rank order, within the budget; the best one always fits (cut if need be).
    let mut excerpts: Vec<(usize, &str)> = Vec::new();
    let mut used = 0;
    for hit in &hits {
        let chunk = &index.chunks[hit.chunk];
        let text = index.chunk_text(chunk);
        if used + text.len() > budget && !excerpts.is_empty() {
            continue;
        }
        let mut cut = text.len().min(budget);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        used += cut;
        excerpts.push((hit.chunk, &text[..cut]));
    }
    Ok(excerpts)
}

/// The generative answerer: a language model reads the excerpts.
pub struct Generative {
    llm: Mutex<Llm>,
    name: String,
    /// Budget for the excerpts, in characters (about four per token).
    pub excerpt_chars: usize,
    pub max_answer_tokens: usize,
}

impl std::fmt::Debug for Generative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generative")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

const SYSTEM: &str = "You are a careful assistant. You answer questions about a document \
using only the excerpts of it that you are given, never outside knowledge.";

const INSTRUCTIONS: &str = "Using only these excerpts, answer the question below in one or \
two short sentences. If the excerpts do not contain the answer, reply NOT FOUND.";

/// The second look's instructions, for a question the first reading said was not there: the
/// model is asked to look harder, and what it then says must pass [`Expect::fits`] and
/// [`Generative::supported`] before it is given.
const SECOND_LOOK: &str = "Using only these excerpts, answer the question below in one or two \
short sentences. Read every excerpt carefully: the answer may use other words than the \
question. Reply NOT FOUND only if none of the excerpts answers it.";

/// The kind of answer a question asks for, from its wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// "In which year ...": a year.
    Year,
    /// "What is the phone number ...": a run of at least six digits.
    Phone,
    /// "How many ...", "How much ...": a number, in digits or words.
    Number,
    /// "On what date ...", "When ...": a date, a year, a month or a day.
    Date,
    /// "Who ...", "Whose ...": a name (a capitalised word not in the question).
    Person,
    Any,
}

#[rustfmt::skip]
const NUMBER_WORDS: &[&str] = &[
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred",
    "thousand", "million", "billion", "dozen", "twice", "half", "double", "triple", "none",
];

#[rustfmt::skip]
const MONTHS_AND_DAYS: &[&str] = &[
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "monday", "tuesday", "wednesday", "thursday", "friday",
    "saturday", "sunday", "century", "today", "yesterday", "tomorrow",
];

/// Capitalised only because they open the answer: no name.
const OPENERS: &[&str] = &[
    "the", "a", "an", "he", "she", "it", "they", "his", "her", "their",
];

impl Expect {
    fn of(question: &str) -> Self {
        let q = format!(" {} ", normalize(question));
        let has = |p: &str| q.contains(p);
        if ["what year", "which year", "what years", "which years"]
            .iter()
            .any(|p| has(p))
        {
            Expect::Year
        } else if (has("phone") || has(" fax ") || has(" tel ")) && (has("number") || has(" tel "))
        {
            Expect::Phone
        } else if [" how many ", " how much ", " how old ", " what percentage "]
            .iter()
            .any(|p| has(p))
        {
            Expect::Number
        } else if [
            " when ",
            " what date ",
            " which date ",
            " what day ",
            " which day ",
        ]
        .iter()
        .any(|p| has(p))
        {
            Expect::Date
        } else if [
            " who ",
            " whom ",
            " whose ",
            " what is the name ",
            " what was the name ",
        ]
        .iter()
        .any(|p| has(p))
            || has(" full name ")
        {
            Expect::Person
        } else {
            Expect::Any
        }
    }

    /// Whether `answer` is the kind of thing asked for.
    fn fits(self, answer: &str, question: &str) -> bool {
        let words: Vec<String> = answer
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let nums = numbers(answer);
        match self {
            Expect::Year => nums.iter().any(|n| {
                n.len() == 4 && n.parse::<u32>().is_ok_and(|y| (1000..=2100).contains(&y))
            }),
            Expect::Phone => {
                let digits = answer
                    .split(|c: char| !(c.is_ascii_digit() || " -.()/+".contains(c)))
                    .map(|run| run.chars().filter(char::is_ascii_digit).count())
                    .max()
                    .unwrap_or(0);
                digits >= 6
            }
            Expect::Number => {
                let is_number = |w: &str| {
                    w.chars().any(|c| c.is_ascii_digit())
                        || NUMBER_WORDS.contains(&w.to_lowercase().as_str())
                };
                let said: Vec<&str> = answer
                    .split(|c: char| c.is_whitespace() || c == '-')
                    .filter(|w| !w.is_empty())
                    .collect();
                if !said.iter().any(|w| is_number(w)) {
                    return false;
                }
                // "How many red kites ...": a longer answer counts them, with the thing counted
                // within a few words after its number, not a number of something else.
                let q = normalize(question);
                let Some(at) = q.find("how many ") else {
                    return true;
                };
                let counted: Vec<String> = terms(
                    &q[at + 9..]
                        .split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                said.len() <= 3
                    || counted.is_empty()
                    || said.iter().enumerate().any(|(i, w)| {
                        is_number(w)
                            && terms(&said[i + 1..(i + 5).min(said.len())].join(" "))
                                .iter()
                                .any(|t| counted.contains(t))
                    })
            }
            Expect::Date => {
                !nums.is_empty() || words.iter().any(|w| MONTHS_AND_DAYS.contains(&w.as_str()))
            }
            Expect::Person => {
                let asked = normalize(question);
                let asked: Vec<&str> = asked
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .collect();
                answer
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .enumerate()
                    .any(|(i, w)| {
                        let lower = w.to_lowercase();
                        w.chars().next().is_some_and(char::is_uppercase)
                            && w.chars().count() > 1
                            && w.chars().all(char::is_alphabetic)
                            && !asked.contains(&normalize(w).as_str())
                            && !(i == 0 && OPENERS.contains(&lower.as_str()))
                    })
            }
            Expect::Any => true,
        }
    }
}

impl Generative {
    pub fn new(llm: Llm, name: impl Into<String>) -> Self {
        Self {
            llm: Mutex::new(llm),
            name: name.into(),
            excerpt_chars: EXCERPT_CHARS,
            max_answer_tokens: 96,
        }
    }

    /// Runs the model on one prompt (for translation and tests), holding the model meanwhile.
    pub fn complete(
        &self,
        messages: &[Message<'_>],
        max_tokens: usize,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String, ChatError> {
        let prompt = Llm::chat_prompt(messages);
        let mut llm = self
            .llm
            .lock()
            .map_err(|_| ChatError::Inference("the model's lock is poisoned".into()))?;
        Ok(llm.generate(&prompt, max_tokens, on_text)?.text)
    }
}

/// `[1]`, `[1, 3]`, `[Excerpt 2]`: the excerpt numbers a reply cites and the reply without them.
fn take_markers(text: &str) -> (String, Vec<usize>) {
    let mut clean = String::new();
    let mut cited = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']').map(|c| open + c) else {
            break;
        };
        let inside = &rest[open + 1..close];
        let body = inside
            .trim()
            .trim_start_matches(|c: char| c.is_alphabetic() || c == ' ');
        let nums: Vec<usize> = body
            .split([',', ' ', ';'])
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        clean.push_str(&rest[..open]);
        if nums.is_empty() {
            clean.push_str(&rest[open..=close]);
        } else {
            cited.extend(nums);
        }
        rest = &rest[close + 1..];
    }
    clean.push_str(rest);
    // Tidy the holes the markers left: "42 ." -> "42.", double spaces.
    let mut tidy = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    for p in [" .", " ,", " ;", " :", " )"] {
        tidy = tidy.replace(p, &p[1..]);
    }
    let tidy = tidy.replace("()", "").trim().to_string();
    (tidy, cited)
}

/// Whether a reply says the answer is not there.
fn is_refusal(text: &str) -> bool {
    let n = normalize(text);
    let n = n.trim_matches(|c: char| !c.is_alphanumeric());
    if n.is_empty() || n.starts_with("not found") || n.ends_with("not found") {
        return true;
    }
    [
        "do not contain",
        "does not contain",
        "does not mention",
        "do not mention",
        "does not say",
        "do not say",
        "does not specify",
        "do not specify",
        "does not provide",
        "do not provide",
        "is not mentioned",
        "not mentioned in",
        "no information",
        "not provided in",
        "not specified in",
        "cannot find",
        "can't find",
        "could not find",
        "not available in",
    ]
    .iter()
    .any(|p| n.contains(p))
}

/// The verbs a yes-or-no question starts with.
const AUXILIARIES: &[&str] = &[
    "is", "are", "was", "were", "do", "does", "did", "has", "have", "had", "can", "could", "will",
    "would", "should", "may", "must",
];

/// Whether a reply only restates the question ("The council sent a reply to this letter" to
/// "What reply did the council send to this letter?"): every term of it is one of the
/// question's, give or take a letter. Such a reply tells nothing, so it is no answer. Replies
/// with a number, a yes or no, or a negation do say something and are kept, and so does any
/// reply to a yes-or-no question.
fn echoes_question(answer: &str, question: &str) -> bool {
    let says_something = answer
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .any(|w| {
            let w = w.to_lowercase();
            matches!(w.as_str(), "yes" | "no" | "not" | "never" | "none") || w.ends_with("n't")
        });
    // "Was the contract signed?" "The contract was signed.": restating is the answer.
    let yes_no = question
        .split_whitespace()
        .next()
        .is_some_and(|w| AUXILIARIES.contains(&w.to_lowercase().as_str()));
    if yes_no || says_something || !numbers(answer).is_empty() {
        return false;
    }
    let asked = terms(question);
    let said = terms(answer);
    !said.is_empty()
        && said.iter().all(|t| {
            asked
                .iter()
                .any(|q| q == t || (t.chars().count() >= 4 && within_one_edit(q, t)))
        })
}

/// Whether one substitution, insertion or deletion at most turns `a` into `b`.
fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    if short.len() == long.len() {
        return short.iter().zip(&long).filter(|(x, y)| x != y).count() <= 1;
    }
    let prefix = short.iter().zip(&long).take_while(|(x, y)| x == y).count();
    short[prefix..] == long[prefix + 1..]
}

/// Streams the model's text without citation markers, holding back what may still turn into a
/// marker or into `NOT FOUND`.
struct MarkerFilter<'a> {
    raw: String,
    sent: usize,
    out: &'a mut dyn FnMut(&str),
    dead: bool,
}

impl MarkerFilter<'_> {
    fn push(&mut self, piece: &str) {
        self.raw.push_str(piece);
        if self.dead {
            return;
        }
        let upper = self.raw.trim_start().to_uppercase();
        if "NOT FOUND".starts_with(upper.as_str()) || upper.starts_with("NOT FOUND") {
            return;
        }
        // Up to an unclosed '[' only.
        let stable = match self.raw.rfind('[') {
            Some(open) if !self.raw[open..].contains(']') => &self.raw[..open],
            _ => self.raw.as_str(),
        };
        let (clean, _) = take_markers(stable);
        // Trailing punctuation may still move ("42 [1]." -> "42."): keep the last word back.
        let keep = clean.rfind(' ').unwrap_or(0);
        let ready = &clean[..keep];
        if ready.len() > self.sent {
            if !ready.is_char_boundary(self.sent) {
                self.dead = true;
                return;
            }
            (self.out)(&ready[self.sent..]);
            self.sent = ready.len();
        }
    }

    /// Sends what is left of the final content, if it continues what was sent.
    fn finish(&mut self, content: &str) {
        if !self.dead && content.len() > self.sent && content.is_char_boundary(self.sent) {
            (self.out)(&content[self.sent..]);
        }
    }
}

impl Answerer for Generative {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn answer(
        &self,
        index: &DocIndex,
        embedder: Option<&Embedder>,
        history: &[Turn],
        question: &str,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Reply, ChatError> {
        let excerpts = excerpts(index, embedder, history, question, self.excerpt_chars)?;
        if excerpts.is_empty() {
            on_text(NOT_IN_DOCUMENT);
            return Ok(Reply::not_found());
        }
        let mut context = String::from("Excerpts from the document:\n");
        for (i, (chunk, text)) in excerpts.iter().enumerate() {
            let chunk = &index.chunks[*chunk];
            let page = index.pages[chunk.page].number;
            // A whole chunk is given row by row; one cut to fit the budget, as it is.
            let text = if text.len() == chunk.end - chunk.start {
                index.chunk_rows(chunk)
            } else {
                text.to_string()
            };
            context.push_str(&format!(
                "\nExcerpt {} (page {page}):\n{}\n",
                i + 1,
                text.trim()
            ));
        }
        let last = format!("{context}\n{INSTRUCTIONS}\n\nQuestion: {question}");
        // Earlier turns, the last two exchanges, assistant turns shortened.
        let earlier: Vec<(String, &str)> = history
            .iter()
            .rev()
            .take(4)
            .rev()
            .map(|t| match t.role {
                Role::User => (t.content.chars().take(400).collect(), "user"),
                Role::Assistant => (t.content.chars().take(300).collect(), "assistant"),
            })
            .collect();
        let mut messages = vec![Message {
            role: "system",
            content: SYSTEM,
        }];
        for (content, role) in &earlier {
            messages.push(Message { role, content });
        }
        messages.push(Message {
            role: "user",
            content: &last,
        });
        let mut filter = MarkerFilter {
            raw: String::new(),
            sent: 0,
            out: on_text,
            dead: false,
        };
        let raw = self.complete(&messages, self.max_answer_tokens, &mut |t| filter.push(t))?;
        tracing::debug!(prompt = last, raw, "language model answer");
        let mut reply = self.ground(index, &excerpts, question, &raw);
        // Nothing has been shown of a refusal: a second, closer reading may still find it.
        if !reply.found && filter.sent == 0 && is_refusal(&raw) {
            let again = format!("{context}\n{SECOND_LOOK}\n\nQuestion: {question}");
            let last = messages.len() - 1;
            messages[last].content = &again;
            let raw = self.complete(&messages, self.max_answer_tokens, &mut |_| {})?;
            let second = self.ground(index, &excerpts, question, &raw);
            let (answer, _) = take_markers(&raw);
            let kept = second.found
                && Expect::of(question).fits(&answer, question)
                && Self::supported(&excerpts, question, &answer);
            tracing::debug!(raw, kept, "second look");
            if kept {
                reply = second;
            }
        }
        filter.finish(&reply.content);
        Ok(reply)
    }
}

impl Generative {
    /// Whether one sentence of the excerpts that shares a term with the question holds all the
    /// answer's numbers and at least 60% of the terms it adds to the question: an answer read
    /// from the text rather than made up around it.
    fn supported(excerpts: &[(usize, &str)], question: &str, answer: &str) -> bool {
        let mut asked = terms(question);
        // A telephone number is labelled "Tel" or "Phone" as often as "Telephone".
        const PHONE: [&str; 3] = ["telephone", "phone", "tel"];
        if asked.iter().any(|t| PHONE.contains(&t.as_str())) {
            asked.extend(PHONE.iter().map(|t| t.to_string()));
        }
        let new: Vec<String> = terms(answer)
            .into_iter()
            .filter(|t| !asked.contains(t))
            .collect();
        let answer_numbers = numbers(answer);
        if new.is_empty() && answer_numbers.is_empty() {
            return false;
        }
        excerpts.iter().any(|(_, text)| {
            sentences(text).into_iter().any(|(a, b)| {
                let sentence = &text[a..b];
                let have = terms(sentence);
                if !asked.iter().any(|t| have.contains(t)) {
                    return false;
                }
                let held = new.iter().filter(|t| have.contains(t)).count();
                let nums = numbers(sentence);
                let numbers_held = answer_numbers.iter().all(|n| nums.contains(n));
                numbers_held && (new.is_empty() || held * 5 >= new.len() * 3)
            })
        })
    }

    /// Turns the model's raw text into a checked reply.
    fn ground(
        &self,
        index: &DocIndex,
        excerpts: &[(usize, &str)],
        question: &str,
        raw: &str,
    ) -> Reply {
        let (answer, cited) = take_markers(raw);
        if is_refusal(&answer) && cited.is_empty() || answer.is_empty() {
            return Reply::not_found();
        }
        if is_refusal(&answer) && normalize(&answer).contains("not found") {
            return Reply::not_found();
        }
        // Every number in the answer must be in the excerpts (or the question): a number from
        // nowhere is an invented one.
        let mut known: Vec<String> = excerpts.iter().flat_map(|(_, t)| numbers(t)).collect();
        known.extend(numbers(question));
        known.extend(
            excerpts
                .iter()
                .map(|(c, _)| index.pages[index.chunks[*c].page].number.to_string()),
        );
        if numbers(&answer).iter().any(|n| !known.contains(n)) || echoes_question(&answer, question)
        {
            return Reply::not_found();
        }
        let mut chosen: Vec<usize> = cited
            .iter()
            .filter(|&&n| n >= 1 && n <= excerpts.len())
            .map(|n| n - 1)
            .collect();
        chosen.dedup();
        let answer_terms = terms(&answer);
        let question_terms = terms(question);
        let answer_numbers = numbers(&answer);
        let spans = candidate_sentences(
            index,
            &excerpts
                .iter()
                .map(|(c, _)| unscored(*c))
                .collect::<Vec<_>>(),
        );
        let support = |s: &Span| -> f32 {
            let text = span_text(index, s);
            let have = terms(text);
            let mut score = 0.0;
            for t in &answer_terms {
                if have.contains(t) && !question_terms.contains(t) {
                    score += 2.0 * index.idf(t).max(0.1);
                }
            }
            for t in &question_terms {
                if have.contains(t) {
                    score += index.idf(t).max(0.1);
                }
            }
            let nums = numbers(text);
            score + 3.0 * answer_numbers.iter().filter(|n| nums.contains(n)).count() as f32
        };
        let in_chunk = |s: &Span, chunk: usize| {
            let c = &index.chunks[chunk];
            s.page == c.page && s.start >= c.start && s.end <= c.end
        };
        let mut best_spans: Vec<Span> = Vec::new();
        for i in chosen.iter().take(3) {
            let chunk = excerpts[*i].0;
            if let Some(best) = spans.iter().filter(|s| in_chunk(s, chunk)).max_by(|a, b| {
                support(a)
                    .total_cmp(&support(b))
                    .then(b.start.cmp(&a.start))
            }) {
                best_spans.push(*best);
            }
        }
        if best_spans.is_empty() {
            // No marker: the sentence that best supports the answer, then, for each number of
            // the answer it lacks, the best sentence holding that number.
            let mut ranked: Vec<&Span> = spans.iter().filter(|s| support(s) > 0.0).collect();
            ranked.sort_by(|a, b| {
                support(b)
                    .total_cmp(&support(a))
                    .then(a.start.cmp(&b.start))
            });
            if let Some(first) = ranked.first() {
                best_spans.push(**first);
            }
            for n in &answer_numbers {
                let covered = best_spans
                    .iter()
                    .any(|s| numbers(span_text(index, s)).contains(n));
                if !covered
                    && best_spans.len() < 3
                    && let Some(s) = ranked
                        .iter()
                        .find(|s| numbers(span_text(index, s)).contains(n))
                {
                    best_spans.push(**s);
                }
            }
        }
        let citations: Vec<Citation> = best_spans
            .iter()
            .filter_map(|s| citation(index, s))
            .collect();
        let citations = verify_citations(index, citations);
        if citations.is_empty() {
            // An answer nothing in the document supports is not given.
            return Reply::not_found();
        }
        let mut pages: Vec<usize> = citations.iter().map(|c| c.page).collect();
        pages.sort_unstable();
        pages.dedup();
        let refs = if pages.len() == 1 {
            format!("(p. {})", pages[0])
        } else {
            format!(
                "(pp. {})",
                pages
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let content = match answer.strip_suffix('.') {
            Some(body) => format!("{body} {refs}."),
            None => format!("{answer} {refs}"),
        };
        Reply {
            content,
            citations,
            found: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::sample;

    #[test]
    fn answers_are_checked_against_the_kind_of_thing_asked_for() {
        let fits = |q: &str, a: &str| Expect::of(q).fits(a, q);
        assert_eq!(Expect::of("In which year was it built?"), Expect::Year);
        assert!(fits("In which year was it built?", "It was built in 1887."));
        assert!(!fits("In which year was the letter written?", "24 May"));
        assert_eq!(
            Expect::of("What is the store's telephone number?"),
            Expect::Phone
        );
        assert!(fits("What is the phone number?", "03-8060 4233"));
        assert!(!fits(
            "What is the store's phone number?",
            "No. 113G, Jalan Setia 5"
        ));
        assert_eq!(Expect::of("How much did she earn?"), Expect::Number);
        assert!(fits(
            "How much did she earn?",
            "She earned 40 marks a month."
        ));
        assert!(fits("How many proposals did she get?", "Three proposals."));
        assert!(!fits(
            "How much did she earn?",
            "She earned considerably less."
        ));
        // A count of something else.
        let q = "How many red kites nest in the valley today?";
        assert!(!fits(
            q,
            "The oldest nest is a 130-year-old oak, surveyed in 2004."
        ));
        assert!(fits(q, "About 260 red kites nest there."));
        assert!(fits(q, "About 260."));
        assert_eq!(Expect::of("When was the report made?"), Expect::Date);
        assert!(fits(
            "When was the report made?",
            "On the fifteenth of April."
        ));
        assert!(!fits("When was the report made?", "After the war ended."));
        assert_eq!(Expect::of("Who wrote the report?"), Expect::Person);
        assert!(fits(
            "Who wrote the report?",
            "The report was written by Anna Weber."
        ));
        assert!(!fits(
            "Who wrote the report?",
            "The report was written at 19 years old."
        ));
        assert!(!fits(
            "Who was the first to propose to Clara?",
            "Clara was."
        ));
        let q = "What was the name of her daughter?";
        assert_eq!(Expect::of(q), Expect::Person);
        assert!(fits(q, "Her daughter was called Ruth."));
        assert!(!fits(q, "Her daughter was 19 years old."));
        // A possessive of the question's own name is no new name.
        let q = "What was the name of Mrs. Hartmann's daughter?";
        assert!(!fits(q, "Mrs. Hartmann's daughter was 19 years old."));
        assert!(fits(q, "Mrs. Hartmann's daughter was Ruth."));
        assert_eq!(Expect::of("Where was it found?"), Expect::Any);
        assert!(fits("Where was it found?", "in the cellar"));
    }

    #[test]
    fn a_second_look_answer_must_be_read_from_one_sentence() {
        let excerpts = [(
            0,
            "He was nervous, and kept playing with a pencil in a way that made me scream.\n\
             The weather was fine all week.",
        )];
        let supported = |q: &str, a: &str| Generative::supported(&excerpts, q, a);
        let q = "What was he playing with while nervous?";
        assert!(supported(q, "He was playing with a pencil."));
        // Words from elsewhere, or from a sentence unrelated to the question.
        assert!(!supported(q, "He was playing with his silk hat."));
        assert!(!supported(
            "What was the weather like?",
            "It was stormy and cold."
        ));
        // Nothing beyond the question's own words.
        assert!(!supported(q, "He was playing while nervous."));
        // A number the sentence does not hold.
        assert!(!supported(q, "He was playing with 3 pencils."));
        // A telephone number under its usual label.
        let excerpts = [(0, "RELAIS OULMES\nTel.:05.22.95.66.66\nFax: 05.22.95.66.67")];
        let q = "What is the telephone number of the station?";
        assert!(Generative::supported(&excerpts, q, "It is 05.22.95.66.66."));
    }

    #[test]
    fn a_reply_that_restates_the_question_is_no_answer() {
        let q = "What reply did the Council for German Jewry send to this letter?";
        assert!(echoes_question(
            "The Council for German Jewry sent a reply to this letter.",
            q
        ));
        assert!(!echoes_question(
            "The Council for German Jewry sent a reply declining the grant.",
            q
        ));
        assert!(!echoes_question("The Council did not send a reply.", q));
        assert!(!echoes_question("It replied on 3 May.", q));
        let yes_no = "Was the contract signed?";
        assert!(!echoes_question("Yes, the contract was signed.", yes_no));
        assert!(!echoes_question("The contract was signed.", yes_no));
    }

    #[test]
    fn one_edit_apart() {
        assert!(within_one_edit("send", "sent"));
        assert!(within_one_edit("send", "sends"));
        assert!(within_one_edit("reply", "reply"));
        assert!(!within_one_edit("ply", "reply"));
        assert!(within_one_edit("", "a"));
        assert!(!within_one_edit("send", "sand1"));
        assert!(!within_one_edit("form", "from"));
    }

    #[test]
    fn markers_are_taken_out() {
        assert_eq!(
            take_markers("The total is 2,420.00 EUR [1]. It is due March 3 [2, 3]."),
            (
                "The total is 2,420.00 EUR. It is due March 3.".to_string(),
                vec![1, 2, 3]
            )
        );
        assert_eq!(
            take_markers("See [Excerpt 2]"),
            ("See".to_string(), vec![2])
        );
        assert_eq!(take_markers("a [b] c"), ("a [b] c".to_string(), vec![]));
    }

    #[test]
    fn refusals_are_recognised() {
        assert!(is_refusal("NOT FOUND"));
        assert!(is_refusal("Not found."));
        assert!(is_refusal("The excerpts do not contain the phone number."));
        assert!(!is_refusal("The total is 42 EUR."));
    }

    #[test]
    fn loose_matching_repairs_spacing_and_case() {
        let page = "Total due: 2,420.00 EUR\nDue date: March 3, 2025";
        let (s, e) = find_loosely(page, "eur due   DATE").expect("found");
        assert_eq!(&page[s..e], "EUR\nDue date");
        assert!(find_loosely(page, "April").is_none());
    }

    #[test]
    fn citations_not_on_their_page_are_dropped_or_repaired() {
        let index = DocIndex::build(&sample(), None).expect("index");
        let got = verify_citations(
            &index,
            vec![
                Citation {
                    page: 1,
                    snippet: "Total due: 2,420.00 EUR".into(),
                    bbox: None,
                },
                Citation {
                    page: 2,
                    snippet: "Total due: 2,420.00 EUR".into(),
                    bbox: None,
                },
                Citation {
                    page: 2,
                    snippet: "late payments  INCUR interest".into(),
                    bbox: None,
                },
                Citation {
                    page: 9,
                    snippet: "anything".into(),
                    bbox: None,
                },
                Citation {
                    page: 1,
                    snippet: "Total due: 2,420.00 EUR".into(),
                    bbox: None,
                },
            ],
        );
        assert_eq!(
            got.iter()
                .map(|c| (c.page, c.snippet.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (1, "Total due: 2,420.00 EUR"),
                (2, "Late payments incur interest")
            ]
        );
    }

    fn ask(question: &str) -> Reply {
        let index = DocIndex::build(&sample(), None).expect("index");
        let mut streamed = String::new();
        let reply = Extractive
            .answer(&index, None, &[], question, &mut |t| streamed.push_str(t))
            .expect("answer");
        assert_eq!(streamed, reply.content);
        for c in &reply.citations {
            assert!(index.page(c.page).expect("page").text.contains(&c.snippet));
        }
        reply
    }

    #[test]
    fn extractive_quotes_the_sentence_with_its_page() {
        let reply = ask("What interest is charged on late payments?");
        assert!(reply.found);
        assert!(
            reply.content.contains("4 percent per month"),
            "{}",
            reply.content
        );
        assert_eq!(reply.citations.len(), 1);
        assert_eq!(reply.citations[0].page, 2);
        assert!(reply.citations[0].bbox.is_some());
        let reply = ask("What is the due date?");
        assert!(reply.content.contains("March 3, 2025"), "{}", reply.content);
        assert_eq!(reply.citations[0].page, 1);
    }

    #[test]
    fn extractive_refuses_what_the_document_does_not_say() {
        let reply = ask("What is the supplier's telephone number?");
        assert!(!reply.found);
        assert!(reply.citations.is_empty());
        assert_eq!(reply.content, NOT_IN_DOCUMENT);
    }

    #[test]
    fn overview_questions_are_told_from_specific_ones() {
        assert!(is_overview("What is this document about?"));
        assert!(is_overview("Summarize the letter."));
        assert!(is_overview("Give me a brief summary"));
        assert!(!is_overview("What is the section on taxes about?"));
        assert!(!is_overview("What is the total?"));
        let reply = ask("What is this document about?");
        assert!(reply.found);
        assert!(
            reply.content.starts_with("Page 1 begins:"),
            "{}",
            reply.content
        );
        assert!(
            reply.content.contains("Invoice 2024-117"),
            "{}",
            reply.content
        );
    }

    #[test]
    fn short_follow_ups_keep_the_subject() {
        let history = vec![
            Turn {
                role: Role::User,
                content: "Who is the invoice billed to?".into(),
            },
            Turn {
                role: Role::Assistant,
                content: "Northwind Traders (p. 1).".into(),
            },
        ];
        assert_eq!(
            retrieval_query(&history, "And where?"),
            "And where? Who is the invoice billed to?"
        );
        assert_eq!(
            retrieval_query(&history, "When is it due?"),
            "When is it due? Who is the invoice billed to?"
        );
        assert_eq!(
            retrieval_query(&history, "What interest applies to late payments?"),
            "What interest applies to late payments?"
        );
    }
}
