//! A minimal PDF writer for tests: pages of Helvetica text at given positions.

/// One text run: position in PDF points (origin bottom left), font size, text (ASCII).
pub struct Text<'a> {
    pub x: f32,
    pub y: f32,
    pub size: f32,
    pub text: &'a str,
}

/// One page: its size in points, its `/Rotate`, its text runs and any raw content to append.
pub struct PageSpec<'a> {
    pub width: f32,
    pub height: f32,
    pub rotate: u16,
    pub texts: Vec<Text<'a>>,
    pub extra_content: String,
}

impl<'a> PageSpec<'a> {
    pub fn letter(texts: Vec<Text<'a>>) -> Self {
        Self {
            width: 612.0,
            height: 792.0,
            rotate: 0,
            texts,
            extra_content: String::new(),
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('(', "\\(")
        .replace(')', "\\)")
}

/// Writes a PDF with `pages`; object 3 is the shared font, pages start at object 4.
pub fn build(pages: &[PageSpec<'_>]) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let page_ids: Vec<usize> = (0..pages.len()).map(|i| 4 + 2 * i).collect();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = page_ids.iter().map(|id| format!("{id} 0 R")).collect();
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        )
        .into_bytes(),
    );
    objects.push(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    );
    for (page, id) in pages.iter().zip(&page_ids) {
        let mut content = String::new();
        for t in &page.texts {
            content.push_str(&format!(
                "BT /F1 {} Tf {} {} Td ({}) Tj ET\n",
                t.size,
                t.x,
                t.y,
                escape(t.text)
            ));
        }
        content.push_str(&page.extra_content);
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] /Rotate {} /Contents {} 0 R /Resources << /Font << /F1 3 0 R >> >> >>",
                page.width,
                page.height,
                page.rotate,
                id + 1
            )
            .into_bytes(),
        );
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend_from_slice(content.as_bytes());
        stream.extend_from_slice(b"\nendstream");
        objects.push(stream);
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}
