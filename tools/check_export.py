"""Independent checks of exported files, run by the export tests (ocr-server/tests/exports.rs).

    check_export.py docx FILE           print the text python-docx reads: paragraphs (and table
                                        cells, row by row, tab-separated) one per line, then the
                                        style of each heading as `#style NAME`
    check_export.py hocr FILE SCHEMAS   validate against the XHTML 1.0 Transitional DTD
    check_export.py alto FILE SCHEMAS   validate against the ALTO 4.4 XSD
    check_export.py json FILE SCHEMA    validate against a JSON Schema
    check_export.py csv FILE            print the number of records and fields per record

Exits non-zero with the validator's message when a file is not valid.
"""
import csv
import json
import os
import sys


def docx_text(path):
    import docx

    d = docx.Document(path)
    body = d.element.body
    out = []
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            p = docx.text.paragraph.Paragraph(child, d)
            out.append(p.text)
            if p.style is not None and p.style.name.startswith(("Heading", "caption", "List")):
                out.append("#style " + p.style.name)
            num = child.find(".//" + docx.oxml.ns.qn("w:numId"))
            if num is not None:
                out.append("#list " + num.get(docx.oxml.ns.qn("w:val")))
        elif tag == "tbl":
            t = docx.table.Table(child, d)
            for row in t.rows:
                out.append("\t".join(c.text for c in row.cells))
    print("\n".join(out))


def hocr(path, schemas):
    from lxml import etree

    dtd = etree.DTD(os.path.join(schemas, "xhtml", "xhtml1-transitional.dtd"))
    doc = etree.parse(path, etree.XMLParser(no_network=True, resolve_entities=False))
    if not dtd.validate(doc):
        sys.exit("hOCR is not valid XHTML 1.0 Transitional: %s" % dtd.error_log.filter_from_errors())
    classes = {e.get("class") for e in doc.iter() if e.get("class")}
    for needed in ["ocr_page", "ocr_carea", "ocr_par", "ocr_line", "ocrx_word"]:
        if needed not in classes and not (needed == "ocr_line" and "ocr_header" in classes):
            sys.exit("hOCR lacks " + needed)
    print("valid")


def alto(path, schemas):
    import xmlschema

    schema = xmlschema.XMLSchema(
        os.path.join(schemas, "alto", "alto-4-4.xsd"),
        allow="local",
        uri_mapper={
            "http://www.loc.gov/standards/xlink/xlink.xsd": os.path.join(schemas, "alto", "xlink.xsd")
        },
    )
    try:
        schema.validate(path)
    except xmlschema.XMLSchemaValidationError as e:
        sys.exit("ALTO is not valid: %s" % e)
    print("valid")


def json_schema(path, schema_path):
    import jsonschema

    with open(schema_path) as f:
        schema = json.load(f)
    with open(path) as f:
        doc = json.load(f)
    try:
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as e:
        sys.exit("json does not match its schema: %s" % e)
    print("valid")


def csv_shape(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, strict=True))
    print(len(rows), " ".join(str(len(r)) for r in rows))


if __name__ == "__main__":
    kind, path, *rest = sys.argv[1:]
    {"docx": lambda: docx_text(path), "hocr": lambda: hocr(path, rest[0]),
     "alto": lambda: alto(path, rest[0]), "json": lambda: json_schema(path, rest[0]),
     "csv": lambda: csv_shape(path)}[kind]()
