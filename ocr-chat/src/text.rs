//! Text helpers shared by retrieval and answering: terms for BM25, sentence spans, and the
//! normalisation under which answers are compared with the document.

/// Words too common to say anything about relevance (English; other languages keep all words,
/// which BM25's idf already discounts).
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "according",
    "after",
    "again",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "document",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "given",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "listed",
    "me",
    "mention",
    "mentioned",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "out",
    "over",
    "own",
    "please",
    "said",
    "same",
    "say",
    "says",
    "she",
    "should",
    "shown",
    "so",
    "some",
    "state",
    "stated",
    "such",
    "tell",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
];

pub fn is_stopword(term: &str) -> bool {
    STOPWORDS.binary_search(&term).is_ok()
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF)
}

/// Reduces an English word to a rough stem, so that `invoices` finds `invoice` and `paid` stays
/// `paid`: only plural and possessive endings are cut.
fn stem(word: &str) -> String {
    let w = word.trim_end_matches('\'');
    let w = w.strip_suffix("'s").unwrap_or(w);
    if w.chars().count() > 4 && w.ends_with("ies") {
        return format!("{}y", &w[..w.len() - 3]);
    }
    if w.chars().count() > 3
        && w.ends_with('s')
        && !w.ends_with("ss")
        && !w.ends_with("us")
        && !w.ends_with("is")
    {
        return w[..w.len() - 1].to_string();
    }
    w.to_string()
}

/// A lowercase Latin letter without its accent: receipts and many scans print `CAFE CREME`
/// where a reader types `café crème`.
fn unaccented(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => 'a',
        'ç' | 'ć' | 'č' => 'c',
        'ď' => 'd',
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' => 'i',
        'ł' | 'ľ' | 'ĺ' => 'l',
        'ñ' | 'ń' | 'ň' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => 'o',
        'ř' | 'ŕ' => 'r',
        'ś' | 'š' | 'ş' | 'ș' => 's',
        'ť' | 'ţ' | 'ț' => 't',
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => 'u',
        'ý' | 'ÿ' => 'y',
        'ź' | 'ż' | 'ž' => 'z',
        c => c,
    }
}

/// The terms BM25 sees: lowercased alphanumeric runs without accents, stemmed, without
/// stopwords; CJK text becomes single characters and their bigrams (no word boundaries to
/// split on).
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_cjk: Option<char> = None;
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            let lower: String = word.to_lowercase().chars().map(unaccented).collect();
            if !is_stopword(&lower) {
                out.push(stem(&lower));
            }
            word.clear();
        }
    };
    for c in text.chars() {
        if is_cjk(c) {
            flush(&mut word, &mut out);
            out.push(c.to_string());
            if let Some(p) = prev_cjk {
                out.push(format!("{p}{c}"));
            }
            prev_cjk = Some(c);
            continue;
        }
        prev_cjk = None;
        if c.is_alphanumeric() || (c == '\'' && !word.is_empty()) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Lowercase, with every run of whitespace made one space and typographic quotes and dashes
/// made plain: how answers are compared with expected strings and with the page.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = match c {
            '\u{2018}' | '\u{2019}' => '\'',
            '\u{201C}' | '\u{201D}' => '"',
            '\u{2013}' | '\u{2014}' => '-',
            c => c,
        };
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// The numbers written in a text, without thousands separators or currency signs: `$1,234.50`
/// gives `1234.50`.
pub fn numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next_digit = chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_ascii_digit() {
            cur.push(c);
        } else if (c == ',' || c == '.') && !cur.is_empty() && next_digit {
            if c == '.' {
                cur.push('.');
            }
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Byte spans of the sentences of `text`: cut after `.`, `!`, `?` or `;` followed by
/// whitespace, at blank lines, and at line breaks after a short line (labels, form fields,
/// receipt rows) or once a sentence is already long. Leading and trailing whitespace is left out.
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut words_in_sentence = 0usize;
    let mut words_in_line = 0usize;
    let mut in_word = false;
    let bytes: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in bytes.iter().enumerate() {
        let next = bytes.get(k + 1).map(|&(_, n)| n);
        if c.is_whitespace() {
            if in_word {
                words_in_sentence += 1;
                words_in_line += 1;
            }
            in_word = false;
        } else {
            in_word = true;
        }
        let cut = match c {
            '.' | '!' | '?' | ';' => next.is_none_or(char::is_whitespace) && words_in_sentence > 0,
            '\n' => {
                let blank = next == Some('\n');
                let short_line = words_in_line < 6;
                let long_sentence = words_in_sentence >= 40;
                blank || short_line || long_sentence
            }
            _ => false,
        };
        if c == '\n' {
            words_in_line = 0;
        }
        if cut {
            let end = i + c.len_utf8();
            push_trimmed(text, start, end, &mut spans);
            start = end;
            words_in_sentence = 0;
        }
    }
    push_trimmed(text, start, text.len(), &mut spans);
    spans
}

fn push_trimmed(text: &str, start: usize, end: usize, spans: &mut Vec<(usize, usize)>) {
    let piece = &text[start..end];
    let lead = piece.len() - piece.trim_start().len();
    let trail = piece.len() - piece.trim_end().len();
    if lead + trail < piece.len() {
        spans.push((start + lead, end - trail));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        let mut sorted = STOPWORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, STOPWORDS);
    }

    #[test]
    fn terms_drop_stopwords_and_stem_plurals() {
        assert_eq!(
            terms("What were the Invoices' totals in 2023?"),
            vec!["invoice", "total", "2023"]
        );
        assert_eq!(terms("東京都"), vec!["東", "京", "東京", "都", "京都"]);
    }

    #[test]
    fn terms_lose_their_accents() {
        assert_eq!(terms("Cafés crème"), terms("CAFE CREME"));
        assert_eq!(terms("Żółć, naïve"), vec!["zolc", "naive"]);
    }

    #[test]
    fn numbers_lose_separators_and_signs() {
        assert_eq!(
            numbers("Total: $1,234.50 on 3/4"),
            vec!["1234.50", "3", "4"]
        );
        assert_eq!(numbers("end. 12."), vec!["12"]);
    }

    #[test]
    fn sentences_cut_on_punctuation_blank_lines_and_short_lines() {
        let text = "First one. Second sentence starts on this line\nand goes on here.\n\nTOTAL\n42.00\nA long line that has many words in it\nand continues.";
        let got: Vec<&str> = sentences(text).iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(
            got,
            vec![
                "First one.",
                "Second sentence starts on this line\nand goes on here.",
                "TOTAL",
                "42.00",
                "A long line that has many words in it\nand continues."
            ]
        );
    }

    #[test]
    fn normalize_collapses_space_and_quotes() {
        assert_eq!(normalize("  It\u{2019}s\n\n A  Test "), "it's a test");
    }
}
