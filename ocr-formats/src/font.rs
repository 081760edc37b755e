//! A glyphless TrueType font for the invisible text layer of searchable PDFs.
//!
//! Two glyphs, `.notdef` and one empty glyph 500 units wide on a 1000-unit em, ascent 800,
//! descent -200: every character of the text layer is drawn with the empty glyph (through the
//! PDF font's `CIDToGIDMap`), so the font never needs to know the script, and the text is
//! recovered through the font's `ToUnicode` map. Built here rather than shipped as a binary
//! file so that every byte of it is visible.

/// Advance width of the one glyph, in 1/1000 em.
pub(crate) const ADVANCE: u16 = 500;
/// Ascent and descent, in 1/1000 em: together a whole em.
pub(crate) const ASCENT: i16 = 800;
pub(crate) const DESCENT: i16 = -200;

/// The font file (an `sfnt` with the `cmap`, `glyf`, `head`, `hhea`, `hmtx`, `loca`, `maxp`,
/// `name` and `post` tables).
pub(crate) fn glyphless_ttf() -> Vec<u8> {
    let be16 = |v: u16| v.to_be_bytes();
    let mut head = Vec::new();
    head.extend(0x0001_0000u32.to_be_bytes()); // version
    head.extend(0x0001_0000u32.to_be_bytes()); // fontRevision
    head.extend(0u32.to_be_bytes()); // checkSumAdjustment, set below
    head.extend(0x5F0F_3CF5u32.to_be_bytes()); // magicNumber
    head.extend(be16(0x000B)); // flags: baseline at y=0, lsb at x=0, integer scaling
    head.extend(be16(1000)); // unitsPerEm
    head.extend([0u8; 16]); // created, modified
    for v in [0, DESCENT, ADVANCE as i16, ASCENT] {
        head.extend(v.to_be_bytes()); // xMin, yMin, xMax, yMax
    }
    head.extend(be16(0)); // macStyle
    head.extend(be16(8)); // lowestRecPPEM
    head.extend(2i16.to_be_bytes()); // fontDirectionHint
    head.extend(0i16.to_be_bytes()); // indexToLocFormat: short offsets
    head.extend(0i16.to_be_bytes()); // glyphDataFormat

    let mut hhea = Vec::new();
    hhea.extend(0x0001_0000u32.to_be_bytes());
    for v in [ASCENT, DESCENT, 0] {
        hhea.extend(v.to_be_bytes()); // ascender, descender, lineGap
    }
    hhea.extend(be16(ADVANCE)); // advanceWidthMax
    for v in [0i16, 0, ADVANCE as i16, 1, 0, 0, 0, 0, 0, 0, 0] {
        // minLeftSideBearing, minRightSideBearing, xMaxExtent, caretSlopeRise, caretSlopeRun,
        // caretOffset, four reserved, metricDataFormat
        hhea.extend(v.to_be_bytes());
    }
    hhea.extend(be16(2)); // numberOfHMetrics

    let mut maxp = Vec::new();
    maxp.extend(0x0001_0000u32.to_be_bytes());
    maxp.extend(be16(2)); // numGlyphs
    for v in [0u16, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0] {
        // maxPoints .. maxComponentDepth; maxZones = 2
        maxp.extend(be16(v));
    }

    let hmtx: Vec<u8> = [ADVANCE, 0, ADVANCE, 0]
        .into_iter()
        .flat_map(be16)
        .collect();
    // Both glyphs are empty: three zero offsets.
    let loca = vec![0u8; 6];
    let glyf = Vec::new();

    // A format 4 cmap with only the required final segment: the PDF font maps characters to
    // glyphs itself.
    let mut cmap = Vec::new();
    for v in [0u16, 1, 3, 1] {
        cmap.extend(be16(v)); // version, one table: platform 3, encoding 1
    }
    cmap.extend(12u32.to_be_bytes()); // its offset
    for v in [4u16, 24, 0, 2, 2, 0, 0, 0xFFFF, 0, 0xFFFF, 1, 0] {
        // format, length, language, segCountX2, searchRange, entrySelector, rangeShift,
        // endCode, reservedPad, startCode, idDelta, idRangeOffset
        cmap.extend(be16(v));
    }

    let mut post = Vec::new();
    post.extend(0x0003_0000u32.to_be_bytes()); // format 3: no glyph names
    post.extend([0u8; 28]);

    let family = "GlyphLessFont";
    let utf16: Vec<u8> = family.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let mut name = Vec::new();
    let records = [1u16, 4, 6]; // family, full name, PostScript name
    for v in [0u16, records.len() as u16, 6 + 12 * records.len() as u16] {
        name.extend(be16(v));
    }
    for id in records {
        for v in [3u16, 1, 0x0409, id, utf16.len() as u16, 0] {
            name.extend(be16(v));
        }
    }
    name.extend(&utf16);

    let tables: [(&[u8; 4], Vec<u8>); 9] = [
        (b"cmap", cmap),
        (b"glyf", glyf),
        (b"head", head),
        (b"hhea", hhea),
        (b"hmtx", hmtx),
        (b"loca", loca),
        (b"maxp", maxp),
        (b"name", name),
        (b"post", post),
    ];
    let count = tables.len() as u16;
    let mut font = Vec::new();
    font.extend(0x0001_0000u32.to_be_bytes());
    let entry_selector = 15 - count.leading_zeros() as u16; // floor(log2(count))
    let search_range = 16u16 << entry_selector;
    for v in [
        count,
        search_range,
        entry_selector,
        count * 16 - search_range,
    ] {
        font.extend(be16(v));
    }
    let mut offset = 12 + 16 * tables.len();
    let mut head_at = 0;
    for (tag, data) in &tables {
        font.extend(*tag);
        font.extend(checksum(data).to_be_bytes());
        font.extend((offset as u32).to_be_bytes());
        font.extend((data.len() as u32).to_be_bytes());
        if *tag == b"head" {
            head_at = offset;
        }
        offset += data.len().div_ceil(4) * 4;
    }
    for (_, data) in &tables {
        font.extend(data);
        font.resize(font.len().div_ceil(4) * 4, 0);
    }
    let adjustment = 0xB1B0_AFBAu32.wrapping_sub(checksum(&font));
    font[head_at + 8..head_at + 12].copy_from_slice(&adjustment.to_be_bytes());
    font
}

/// The sum of the data as big-endian 32-bit words, zero-padded.
fn checksum(data: &[u8]) -> u32 {
    data.chunks(4).fold(0u32, |sum, chunk| {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        sum.wrapping_add(u32::from_be_bytes(word))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_font_parses_with_its_metrics() {
        let data = super::glyphless_ttf();
        let face = ttf_parser::Face::parse(&data, 0).expect("a valid sfnt");
        assert_eq!(face.number_of_glyphs(), 2);
        assert_eq!(face.units_per_em(), 1000);
        assert_eq!(face.ascender(), super::ASCENT);
        assert_eq!(face.descender(), super::DESCENT);
        assert_eq!(
            face.glyph_hor_advance(ttf_parser::GlyphId(1)),
            Some(super::ADVANCE)
        );
    }
}
