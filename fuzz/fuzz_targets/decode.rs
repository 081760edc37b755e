//! Fuzzes the decoders: sniffing, opening (page counting) and decoding the first pages of any
//! input through `ocr_core::InputFile`.
//!
//! `ocr-core` catches panics from third-party decoders (`catch_unwind`) and turns them into
//! `Error::Internal`. libfuzzer-sys, however, installs a panic hook that aborts the process on
//! *every* panic, caught or not, so by default each caught panic would end the run as a "crash".
//! This target therefore has two modes:
//!
//! * default: the aborting hook is replaced by one that records the panic. A panic the library
//!   catches is logged once per source location (`[decode-fuzz] caught panic ...`, with a
//!   backtrace) and its first input is saved under `artifacts/decode/caught-panics/`; fuzzing
//!   goes on. A panic that escapes `ocr-core` is a crash: its message and backtrace are printed
//!   and the process aborts, so libFuzzer saves the input as `crash-*`.
//! * `DECODE_FUZZ_STRICT=1`: libfuzzer-sys's hook stays, so any panic, even one the library
//!   would catch, aborts and is saved as a crash.

#![no_main]

use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use ocr_core::{DecodeOptions, InputFile, Limits, PageParts};

/// Most pages decoded per input.
const MAX_PAGES: usize = 3;

struct LastPanic {
    location: String,
    message: String,
    backtrace: Backtrace,
}

thread_local! {
    /// Panics raised while decoding the current input, in order.
    static PANICS: RefCell<Vec<LastPanic>> = const { RefCell::new(Vec::new()) };
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Source locations of caught panics already reported.
static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn caught_dir() -> PathBuf {
    std::env::var_os("DECODE_FUZZ_CAUGHT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/artifacts/decode/caught-panics"))
        })
}

fn payload_message(info: &panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Replaces libfuzzer-sys's aborting panic hook with one that only records the panic.
fn install_recording_hook() {
    if std::env::var_os("DECODE_FUZZ_STRICT").is_some_and(|v| v != "0") {
        return;
    }
    panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "<unknown>".to_string());
        let message = payload_message(info);
        let backtrace = Backtrace::force_capture();
        PANICS.with(|p| {
            p.borrow_mut().push(LastPanic {
                location,
                message,
                backtrace,
            })
        });
    }));
}

/// Reports the panics the library caught, each source location once.
fn report_caught_panics() {
    for last in PANICS.with(|p| std::mem::take(&mut *p.borrow_mut())) {
        report_caught_panic(last);
    }
}

fn report_caught_panic(last: LastPanic) {
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.get_or_insert_with(HashSet::new).insert(last.location.clone()) {
        return;
    }
    drop(seen);
    let dir = caught_dir();
    let name = format!(
        "{:016x}",
        last.location
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
    );
    let saved = std::fs::create_dir_all(&dir)
        .and_then(|()| INPUT.with(|i| std::fs::write(dir.join(&name), &*i.borrow())))
        .map(|()| dir.join(&name).display().to_string())
        .unwrap_or_else(|e| format!("<not saved: {e}>"));
    eprintln!(
        "[decode-fuzz] caught panic (ocr-core turned it into an error) at {}: {}\n[decode-fuzz] input saved as {}\n{}",
        last.location, last.message, saved, last.backtrace
    );
}

fn decode(data: &[u8]) {
    let options = DecodeOptions {
        dpi: 72.0,
        limits: Limits {
            max_page_pixels: 4_000_000,
            max_alloc_bytes: 256 << 20,
            page_timeout: Duration::from_secs(5),
            ..Limits::default()
        },
    };
    let Ok(file) = InputFile::open(data.to_vec(), options) else {
        return;
    };
    for index in 0..file.page_count().min(MAX_PAGES) {
        let _ = std::hint::black_box(file.page(index, PageParts::ALL));
    }
}

fuzz_target!(init: install_recording_hook(), |data: &[u8]| {
    INPUT.with(|i| {
        let mut i = i.borrow_mut();
        i.clear();
        i.extend_from_slice(data);
    });
    PANICS.with(|p| p.borrow_mut().clear());
    // In strict mode a panic never gets here: the hook aborts first.
    match panic::catch_unwind(AssertUnwindSafe(|| decode(data))) {
        Ok(()) => report_caught_panics(),
        Err(_) => {
            let last = PANICS.with(|p| p.borrow_mut().pop());
            match last {
                Some(last) => eprintln!(
                    "[decode-fuzz] PANIC ESCAPED ocr-core at {}: {}\n{}",
                    last.location, last.message, last.backtrace
                ),
                None => eprintln!("[decode-fuzz] PANIC ESCAPED ocr-core"),
            }
            std::process::abort();
        }
    }
});
