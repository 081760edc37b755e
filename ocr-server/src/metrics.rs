//! Prometheus metrics, kept in memory and written in the text exposition format at `/metrics`:
//! requests by route and status, request latency, pages by outcome, per-stage latency, jobs by
//! outcome; the queue depth is read from the database when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Latency bucket bounds in seconds.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    request_seconds: BTreeMap<String, Histogram>,
    pages: BTreeMap<&'static str, u64>,
    stage_seconds: BTreeMap<&'static str, Histogram>,
    jobs: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.with(|m| {
            *m.requests
                .entry((method.to_string(), route.to_string(), status))
                .or_default() += 1;
            m.request_seconds
                .entry(route.to_string())
                .or_default()
                .observe(seconds);
        });
    }

    /// A page read: `outcome` is `done` or `failed`.
    pub fn page(&self, outcome: &'static str) {
        self.with(|m| *m.pages.entry(outcome).or_default() += 1);
    }

    /// Time spent in a stage: `page` (decode and recognise one page), `pdf` (build the
    /// searchable PDF), `queue_wait` (submitted to claimed), `job` (claimed to finished).
    pub fn stage(&self, stage: &'static str, seconds: f64) {
        self.with(|m| m.stage_seconds.entry(stage).or_default().observe(seconds));
    }

    pub fn job(&self, outcome: &'static str) {
        self.with(|m| *m.jobs.entry(outcome).or_default() += 1);
    }

    pub fn render(&self, queue_depth: i64, inline_in_flight: usize) -> String {
        let mut out = String::new();
        self.with(|m| {
            out.push_str("# HELP ocr_http_requests_total HTTP requests by route and status.\n");
            out.push_str("# TYPE ocr_http_requests_total counter\n");
            for ((method, route, status), n) in &m.requests {
                let _ = writeln!(
                    out,
                    "ocr_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
            out.push_str("# HELP ocr_http_request_duration_seconds Request latency by route.\n");
            out.push_str("# TYPE ocr_http_request_duration_seconds histogram\n");
            for (route, h) in &m.request_seconds {
                h.write(
                    &mut out,
                    "ocr_http_request_duration_seconds",
                    &format!("route=\"{route}\""),
                );
            }
            out.push_str("# HELP ocr_pages_total Pages read, by outcome.\n");
            out.push_str("# TYPE ocr_pages_total counter\n");
            for (outcome, n) in &m.pages {
                let _ = writeln!(out, "ocr_pages_total{{outcome=\"{outcome}\"}} {n}");
            }
            out.push_str("# HELP ocr_jobs_total Jobs finished, by outcome.\n");
            out.push_str("# TYPE ocr_jobs_total counter\n");
            for (outcome, n) in &m.jobs {
                let _ = writeln!(out, "ocr_jobs_total{{outcome=\"{outcome}\"}} {n}");
            }
            out.push_str("# HELP ocr_stage_duration_seconds Time per pipeline stage.\n");
            out.push_str("# TYPE ocr_stage_duration_seconds histogram\n");
            for (stage, h) in &m.stage_seconds {
                h.write(
                    &mut out,
                    "ocr_stage_duration_seconds",
                    &format!("stage=\"{stage}\""),
                );
            }
        });
        out.push_str("# HELP ocr_queue_depth Jobs waiting in the queue.\n");
        out.push_str("# TYPE ocr_queue_depth gauge\n");
        let _ = writeln!(out, "ocr_queue_depth {queue_depth}");
        out.push_str(
            "# HELP ocr_inline_requests_in_flight Submissions being read or recognised inline.\n",
        );
        out.push_str("# TYPE ocr_inline_requests_in_flight gauge\n");
        let _ = writeln!(out, "ocr_inline_requests_in_flight {inline_in_flight}");
        out
    }
}
