//! Stage timings on stderr when `OCR_TRACE` is set: a debugging aid.

use std::time::Instant;

/// Prints the time since the previous lap, labelled, when tracing is on.
#[derive(Debug)]
pub struct Clock {
    last: Option<Instant>,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            last: std::env::var_os("OCR_TRACE").map(|_| Instant::now()),
        }
    }

    pub fn lap(&mut self, stage: &str) {
        if let Some(last) = self.last {
            let now = Instant::now();
            eprintln!(
                "[trace] {stage}: {:.1} ms",
                (now - last).as_secs_f64() * 1000.0
            );
            self.last = Some(now);
        }
    }
}
