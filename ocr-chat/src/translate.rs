//! Translation of a recognised document by the chat's language model, block by block, so the
//! structure (pages, headings, paragraphs, list items, their boxes) survives and every exporter
//! can write the translation as it writes the original.

use ocr_core::{Block, Document, Line, Page};

use crate::ChatError;
use crate::answer::Generative;
use crate::llm::Message;

/// Target languages the shipped Qwen2.5 models translate into, by code.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("ar", "Arabic"),
    ("de", "German"),
    ("en", "English"),
    ("es", "Spanish"),
    ("fr", "French"),
    ("id", "Indonesian"),
    ("it", "Italian"),
    ("ja", "Japanese"),
    ("ko", "Korean"),
    ("nl", "Dutch"),
    ("pl", "Polish"),
    ("pt", "Portuguese"),
    ("ru", "Russian"),
    ("th", "Thai"),
    ("tr", "Turkish"),
    ("vi", "Vietnamese"),
    ("zh", "Chinese"),
];

/// The language's English name for a supported code (case-insensitive), else `None`.
pub fn language_name(code: &str) -> Option<&'static str> {
    let code = code.trim().to_ascii_lowercase();
    LANGUAGES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The supported codes, for error messages.
pub fn supported_codes() -> Vec<&'static str> {
    LANGUAGES.iter().map(|(c, _)| *c).collect()
}

/// Blocks longer than this are translated a group of lines at a time.
const MAX_CHARS: usize = 1200;

/// The document with every text block translated into `target` (a code of [`LANGUAGES`]).
/// Tables, figures and formulas are kept as they are. `on_page` is told each page done.
pub fn translate_document(
    model: &Generative,
    doc: &Document,
    target: &str,
    on_page: &mut dyn FnMut(usize),
) -> Result<Document, ChatError> {
    let mut out = Document {
        pages: Vec::with_capacity(doc.pages.len()),
    };
    for page in &doc.pages {
        out.pages.push(translate_page(model, page, target)?);
        on_page(page.index);
    }
    Ok(out)
}

/// One page translated (see [`translate_document`]); a failed page stays as it is.
pub fn translate_page(model: &Generative, page: &Page, target: &str) -> Result<Page, ChatError> {
    let language = language_name(target).ok_or_else(|| {
        ChatError::Unsupported(format!(
            "cannot translate into `{target}`; supported: {}",
            supported_codes().join(", ")
        ))
    })?;
    let mut out = page.clone();
    if out.is_failed() {
        return Ok(out);
    }
    for block in &mut out.blocks {
        if block.table.is_some() {
            continue;
        }
        translate_block(model, block, language)?;
    }
    out.language = Some(target.trim().to_ascii_lowercase());
    Ok(out)
}

fn translate_block(model: &Generative, block: &mut Block, language: &str) -> Result<(), ChatError> {
    let lines: Vec<&Line> = block.lines.iter().collect();
    if !lines
        .iter()
        .any(|l| l.text.chars().any(char::is_alphabetic))
    {
        return Ok(());
    }
    // Groups of whole lines within the size limit.
    let mut groups: Vec<Vec<&Line>> = vec![Vec::new()];
    let mut size = 0;
    for line in lines {
        if size + line.text.len() > MAX_CHARS && groups.last().is_some_and(|g| !g.is_empty()) {
            groups.push(Vec::new());
            size = 0;
        }
        size += line.text.len() + 1;
        if let Some(g) = groups.last_mut() {
            g.push(line);
        }
    }
    let mut translated: Vec<Line> = Vec::new();
    for group in groups {
        let source = group
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let text = translate_text(model, &source, language)?;
        let new_lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let same_shape = new_lines.len() == group.len();
        let bbox = ocr_core::BBox::enclosing(group.iter().map(|l| &l.bbox)).unwrap_or(block.bbox);
        let confidence =
            group.iter().map(|l| l.confidence).sum::<f32>() / group.len().max(1) as f32;
        for (i, t) in new_lines.iter().enumerate() {
            translated.push(Line {
                text: t.trim().to_string(),
                bbox: if same_shape { group[i].bbox } else { bbox },
                polygon: None,
                confidence,
                words: Vec::new(),
            });
        }
    }
    block.lines = translated;
    Ok(())
}

/// One piece of text translated; greedy decoding, so the same text always gives the same output.
pub fn translate_text(model: &Generative, text: &str, language: &str) -> Result<String, ChatError> {
    let prompt = format!(
        "Translate this text from a document into {language}. Keep the line breaks. Write only \
         the translation, with no comment.\n\n{text}"
    );
    let messages = [
        Message {
            role: "system",
            content: "You are a careful translator.",
        },
        Message {
            role: "user",
            content: &prompt,
        },
    ];
    let budget = (text.len() / 2 + 64).min(1024);
    let out = model.complete(&messages, budget, &mut |_| {})?;
    Ok(out.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked() {
        assert_eq!(language_name("FR"), Some("French"));
        assert_eq!(language_name("xx"), None);
        assert!(supported_codes().contains(&"de"));
    }
}
