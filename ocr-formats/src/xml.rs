//! XML text and attribute escaping shared by the XML-based formats (hOCR, ALTO, docx).

/// Whether XML 1.0 allows `c` in a document at all. Control characters other than tab, line feed
/// and carriage return, lone surrogates (impossible in a `str`) and U+FFFE/U+FFFF are not: a
/// recognised string containing one would make the whole file unreadable.
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `s` escaped for element content or a double-quoted attribute value; characters XML cannot
/// carry are dropped. Tabs and line breaks in attributes become character references so that
/// parsers do not normalise them to spaces.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|&c| allowed(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's language as a language tag for `lang` / `LANG` attributes: only a code whose
/// first part is two or three letters (`en`, `sr-latn`), not a script name such as `latin`.
pub(crate) fn language_tag(language: Option<&str>) -> Option<&str> {
    language.filter(|tag| {
        tag.split('-').enumerate().all(|(i, part)| {
            let letters_only = part.chars().all(|c| c.is_ascii_alphabetic());
            if i == 0 {
                (2..=3).contains(&part.len()) && letters_only
            } else {
                (1..=8).contains(&part.len()) && part.chars().all(|c| c.is_ascii_alphanumeric())
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_is_escaped_and_forbidden_characters_dropped() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(escape("x\u{0}y\u{1b}z\u{FFFF}"), "xyz");
        assert_eq!(escape("日本 عربي 😀"), "日本 عربي 😀");
    }

    #[test]
    fn only_language_codes_become_language_tags() {
        use super::language_tag;
        assert_eq!(language_tag(Some("en")), Some("en"));
        assert_eq!(language_tag(Some("sr-latn")), Some("sr-latn"));
        assert_eq!(language_tag(Some("latin")), None);
        assert_eq!(language_tag(Some("e\"n")), None);
        assert_eq!(language_tag(None), None);
    }
}
