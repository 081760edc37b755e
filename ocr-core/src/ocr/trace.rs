//! Stage timings on stderr when `OCR_TRACE` is set: a debugging aid.

use std::sync::OnceLock;
use std::time::Instant;

/// Whether `OCR_TRACE` is set (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("OCR_TRACE").is_some())
}

/// Prints the time since the previous lap, labelled, when tracing is on.
#[derive(Debug)]
pub struct Clock {
    last: Option<Instant>,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            last: enabled().then(Instant::now),
        }
    }

    pub fn lap(&mut self, stage: &str) {
        if let Some(last) = self.last {
            let now = Instant::now();
            eprintln!(
                "[trace] {stage}: {:.1} ms, peak RSS so far {} MB",
                (now - last).as_secs_f64() * 1000.0,
                peak_rss_mb()
            );
            self.last = Some(now);
        }
    }
}

/// The process's peak resident set so far (`VmHWM`), in MB; 0 where `/proc` is missing.
fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
