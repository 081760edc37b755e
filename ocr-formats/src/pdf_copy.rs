//! Copying a page of the source PDF into the searchable PDF with its vector content: a
//! born-digital page that was read from its own text layer is already searchable, so it is kept
//! as it was (sharper and smaller than its rendered image) rather than redrawn.
//!
//! The page's dictionary is copied with the attributes it inherits from its page tree
//! (`Resources`, `MediaBox`, `CropBox`, `Rotate`) made its own, without what would drag in
//! the rest of the document (`Parent`, annotations, structure and thread references); every
//! object it refers to, directly or not, is copied once under a new number. The source is
//! untrusted: parsing runs under `catch_unwind`, reference cycles are followed once, and a page
//! needing more than [`MAX_OBJECTS`] objects is not copied (it falls back to its image).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};

use lopdf::{Dictionary, Object, ObjectId};

/// The most objects one copied page may bring along.
const MAX_OBJECTS: usize = 100_000;

/// Keys of a page dictionary that are not copied.
const DROPPED: [&[u8]; 7] = [
    b"Parent",
    b"Annots",
    b"B",
    b"StructParents",
    b"Thumb",
    b"PieceInfo",
    b"Metadata",
];

/// Attributes a page inherits from its ancestors when it does not set them.
const INHERITED: [&[u8]; 4] = [b"Resources", b"MediaBox", b"CropBox", b"Rotate"];

/// A parsed source PDF and its pages.
pub(crate) struct Source {
    doc: lopdf::Document,
    pages: BTreeMap<u32, ObjectId>,
}

impl Source {
    /// Parses `bytes`; `None` for a file `lopdf` cannot read (or can only read encrypted).
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        catch_unwind(|| {
            let mut doc = lopdf::Document::load_mem(bytes).ok()?;
            if doc.is_encrypted() {
                doc.decrypt("").ok()?;
            }
            let pages = doc.get_pages();
            Some(Self { doc, pages })
        })
        .ok()
        .flatten()
    }

    /// The objects of page `index` (0-based), renumbered from `next_id`: the page dictionary
    /// (its `Parent` to be set by the caller) and every object it needs, as `(id, object)`.
    /// `None` if the page is missing or too large to copy.
    ///
    /// `copied` maps source objects already written (for earlier pages) to their numbers: they
    /// are referred to, not copied again, so pages share their fonts and images; the objects
    /// copied now are added to it.
    pub(crate) fn page(
        &self,
        index: usize,
        next_id: usize,
        copied: &mut HashMap<ObjectId, usize>,
    ) -> Option<(Dictionary, Vec<(usize, Object)>)> {
        let (page, objects, new) =
            catch_unwind(AssertUnwindSafe(|| self.copy_page(index, next_id, copied)))
                .ok()
                .flatten()?;
        copied.extend(new);
        Some((page, objects))
    }

    #[allow(clippy::type_complexity)]
    fn copy_page(
        &self,
        index: usize,
        next_id: usize,
        known: &HashMap<ObjectId, usize>,
    ) -> Option<(Dictionary, Vec<(usize, Object)>, HashMap<ObjectId, usize>)> {
        let page_id = *self.pages.get(&(u32::try_from(index).ok()? + 1))?;
        let source = self.doc.get_dictionary(page_id).ok()?;
        let mut page = Dictionary::new();
        for (key, value) in source.iter() {
            if !DROPPED.contains(&key.as_slice()) {
                page.set(key.clone(), value.clone());
            }
        }
        for key in INHERITED {
            if !page.has(key)
                && let Some(value) = self.inherited(source, key)
            {
                page.set(key.to_vec(), value);
            }
        }
        // Number every object the page reaches, then copy them with their references renumbered.
        let mut ids: HashMap<ObjectId, usize> = HashMap::new();
        let mut queue: VecDeque<ObjectId> = VecDeque::new();
        let reach = |object: &Object,
                     ids: &mut HashMap<ObjectId, usize>,
                     queue: &mut VecDeque<ObjectId>| {
            each_reference(object, &mut |id| {
                if !ids.contains_key(&id) && !known.contains_key(&id) {
                    ids.insert(id, next_id + ids.len());
                    queue.push_back(id);
                }
            });
        };
        reach(&Object::Dictionary(page.clone()), &mut ids, &mut queue);
        let mut objects = Vec::new();
        while let Some(id) = queue.pop_front() {
            if ids.len() > MAX_OBJECTS {
                return None;
            }
            let object = match self.doc.get_object(id) {
                Ok(Object::Dictionary(d)) if d.has(b"Parent") && is_page_node(d) => Object::Null,
                Ok(object) => object.clone(),
                Err(_) => Object::Null,
            };
            reach(&object, &mut ids, &mut queue);
            objects.push((ids[&id], object));
        }
        let number = |id: &ObjectId| ids.get(id).or_else(|| known.get(id)).copied();
        let objects = objects
            .into_iter()
            .map(|(new, object)| (new, renumber(object, &number)))
            .collect();
        let Object::Dictionary(page) = renumber(Object::Dictionary(page), &number) else {
            return None;
        };
        Some((page, objects, ids))
    }

    /// The value of `key` on the nearest ancestor of `page` that sets it.
    fn inherited(&self, page: &Dictionary, key: &[u8]) -> Option<Object> {
        let mut node = page;
        for _ in 0..64 {
            let parent = node.get(b"Parent").ok()?.as_reference().ok()?;
            node = self.doc.get_dictionary(parent).ok()?;
            if let Ok(value) = node.get(key) {
                return Some(value.clone());
            }
        }
        None
    }
}

/// Whether `d` is a node of the page tree (another page, or the tree itself), which a copied
/// page must not bring along.
fn is_page_node(d: &Dictionary) -> bool {
    matches!(
        d.get(b"Type").and_then(Object::as_name),
        Ok(b"Page" | b"Pages")
    )
}

fn each_reference(object: &Object, f: &mut impl FnMut(ObjectId)) {
    match object {
        Object::Reference(id) => f(*id),
        Object::Array(items) => items.iter().for_each(|o| each_reference(o, f)),
        Object::Dictionary(d) => d.iter().for_each(|(_, o)| each_reference(o, f)),
        Object::Stream(s) => s.dict.iter().for_each(|(_, o)| each_reference(o, f)),
        _ => {}
    }
}

fn renumber(object: Object, ids: &impl Fn(&ObjectId) -> Option<usize>) -> Object {
    let dict = |d: Dictionary| {
        let mut out = Dictionary::new();
        for (k, v) in d.into_iter() {
            out.set(k, renumber(v, ids));
        }
        out
    };
    match object {
        Object::Reference(id) => match ids(&id) {
            Some(new) => Object::Reference((new as u32, 0)),
            None => Object::Null,
        },
        Object::Array(items) => {
            Object::Array(items.into_iter().map(|o| renumber(o, ids)).collect())
        }
        Object::Dictionary(d) => Object::Dictionary(dict(d)),
        Object::Stream(mut s) => {
            s.dict = dict(s.dict);
            Object::Stream(s)
        }
        other => other,
    }
}

/// Writes `object` in PDF syntax. Streams are written by the caller; here a stream is its
/// dictionary, with `Length` set to its content's.
pub(crate) fn serialize(object: &Object, out: &mut Vec<u8>) {
    match object {
        Object::Null => out.extend(b"null"),
        Object::Boolean(b) => out.extend(if *b { &b"true"[..] } else { b"false" }),
        Object::Integer(i) => out.extend(i.to_string().as_bytes()),
        Object::Real(r) => out.extend(super::pdf::num(*r).as_bytes()),
        Object::Name(name) => name_bytes(name, out),
        Object::String(bytes, _) => {
            out.push(b'<');
            for b in bytes {
                let _ = write!(out, "{b:02X}");
            }
            out.push(b'>');
        }
        Object::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                serialize(item, out);
            }
            out.push(b']');
        }
        Object::Dictionary(d) => dictionary(d, None, out),
        Object::Stream(s) => dictionary(&s.dict, Some(s.content.len()), out),
        Object::Reference((id, _)) => {
            let _ = write!(out, "{id} 0 R");
        }
    }
}

fn dictionary(d: &Dictionary, length: Option<usize>, out: &mut Vec<u8>) {
    out.extend(b"<<");
    for (key, value) in d.iter() {
        if length.is_some() && key.as_slice() == b"Length" {
            continue;
        }
        out.push(b' ');
        name_bytes(key, out);
        out.push(b' ');
        serialize(value, out);
    }
    if let Some(length) = length {
        let _ = write!(out, " /Length {length}");
    }
    out.extend(b" >>");
}

/// A name, with every byte outside the regular printable characters written as `#xx`.
fn name_bytes(name: &[u8], out: &mut Vec<u8>) {
    out.push(b'/');
    for &b in name {
        let regular = b.is_ascii_graphic() && !b"#()<>[]{}/%".contains(&b);
        if regular {
            out.push(b);
        } else {
            let _ = write!(out, "#{b:02X}");
        }
    }
}
