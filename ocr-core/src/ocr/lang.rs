//! Languages: what the installed recognisers can read, and the script a
//! page's text is written in.

/// Languages the PP-OCRv6 recognisers read (ISO 639-1), by model size.
/// The small model reads Chinese, Japanese and Latin-script languages; the
/// tiny one has no kana, so no Japanese.
pub fn supported(size: super::ModelSize) -> &'static [&'static str] {
    const LATIN: &[&str] = &[
        "en", "de", "fr", "es", "it", "pt", "nl", "da", "sv", "no", "nb", "fi", "is", "ga", "ca",
        "eu", "gl", "la", "pl", "cs", "sk", "sl", "hr", "bs", "sr-latn", "hu", "ro", "et", "lv",
        "lt", "sq", "mt", "tr", "az", "id", "ms", "tl", "sw", "vi", "af", "cy", "eo", "zh", "ja",
    ];
    match size {
        super::ModelSize::Small => LATIN,
        super::ModelSize::Tiny => &LATIN[..LATIN.len() - 1],
    }
}

/// Checks a requested language (`auto`, or an ISO 639-1 code, or a
/// Tesseract-style code like `eng`/`deu`/`chi_sim`, several joined by `+`).
/// Returns the first unsupported one.
pub fn check(requested: &str, size: super::ModelSize) -> Result<(), String> {
    let ok = supported(size);
    for part in requested
        .split(['+', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if part.eq_ignore_ascii_case("auto") {
            continue;
        }
        let code = normalize(part);
        if !ok.contains(&code.as_str()) {
            return Err(format!(
                "language {part:?} cannot be read by the installed {} models; supported: auto, {}",
                size.name(),
                ok.join(", ")
            ));
        }
    }
    Ok(())
}

/// Maps Tesseract's three-letter codes to two-letter ones.
fn normalize(code: &str) -> String {
    let c = code.to_ascii_lowercase();
    let mapped = match c.as_str() {
        "eng" => "en",
        "deu" | "ger" => "de",
        "fra" | "fre" => "fr",
        "spa" => "es",
        "ita" => "it",
        "por" => "pt",
        "nld" | "dut" => "nl",
        "dan" => "da",
        "swe" => "sv",
        "nor" => "no",
        "fin" => "fi",
        "pol" => "pl",
        "ces" | "cze" => "cs",
        "slk" => "sk",
        "hun" => "hu",
        "ron" | "rum" => "ro",
        "tur" => "tr",
        "vie" => "vi",
        "ind" => "id",
        "lat" => "la",
        "cat" => "ca",
        "chi_sim" | "chi_tra" | "zh-cn" | "zh-tw" | "zh-hans" | "zh-hant" => "zh",
        "jpn" => "ja",
        other => return other.split(['-', '_']).next().unwrap_or(other).to_string(),
    };
    mapped.to_string()
}

/// The dominant script of `text`, as a language tag where the script
/// implies one: `ja` (kana present), `zh` (Han without kana), `ko`, `ru`
/// (Cyrillic), `ar`, `he`, `el`, `hi` (Devanagari), `th`, else `latin`
/// for Latin letters; `None` without letters.
pub fn detect_script(text: &str) -> Option<&'static str> {
    let mut counts = [0usize; 10];
    for ch in text.chars() {
        let c = ch as u32;
        let k = match c {
            0x3040..=0x30ff | 0x31f0..=0x31ff => 0, // kana
            0x4e00..=0x9fff | 0x3400..=0x4dbf | 0xf900..=0xfaff => 1, // Han
            0xac00..=0xd7af | 0x1100..=0x11ff => 2, // Hangul
            0x0400..=0x04ff => 3,                   // Cyrillic
            0x0600..=0x06ff | 0x0750..=0x077f => 4, // Arabic
            0x0590..=0x05ff => 5,                   // Hebrew
            0x0370..=0x03ff => 6,                   // Greek
            0x0900..=0x097f => 7,                   // Devanagari
            0x0e00..=0x0e7f => 8,                   // Thai
            _ if ch.is_alphabetic() => 9,
            _ => continue,
        };
        counts[k] += 1;
    }
    let total: usize = counts.iter().sum();
    if total == 0 {
        return None;
    }
    if counts[0] > 0 && counts[0] + counts[1] >= total / 3 {
        return Some("ja");
    }
    let (k, _) = counts.iter().enumerate().max_by_key(|(_, n)| **n)?;
    Some(
        [
            "ja", "zh", "ko", "ru", "ar", "he", "el", "hi", "th", "latin",
        ][k],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocr::ModelSize;

    #[test]
    fn unsupported_languages_name_the_supported_ones() {
        assert!(check("auto", ModelSize::Small).is_ok());
        assert!(check("eng+deu", ModelSize::Small).is_ok());
        assert!(check("ja", ModelSize::Small).is_ok());
        let e = check("ru", ModelSize::Small).unwrap_err();
        assert!(
            e.contains("\"ru\"") && e.contains("supported: auto, en"),
            "{e}"
        );
        assert!(check("jpn", ModelSize::Tiny).is_err());
    }

    #[test]
    fn scripts_are_told_apart() {
        assert_eq!(detect_script("Hello world"), Some("latin"));
        assert_eq!(detect_script("東京は日本の首都です"), Some("ja"));
        assert_eq!(detect_script("中华人民共和国"), Some("zh"));
        assert_eq!(detect_script("Привет мир"), Some("ru"));
        assert_eq!(detect_script("1234 !!"), None);
    }
}
