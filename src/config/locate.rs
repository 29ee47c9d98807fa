//! Where in the file a problem is: key paths (`check[2].timeout`), their
//! spans in the parsed document, and 1-based line and column, so every
//! error reads `path:line:col: key: message`.

/// One problem found by the validation pass, located by its key path.
pub struct Problem {
    pub key: Vec<KeySeg>,
    pub message: String,
}

#[derive(Clone)]
pub enum KeySeg {
    Key(&'static str),
    /// A key named at run time (a kind's field, from serde's path).
    Name(String),
    Index(usize),
}

impl KeySeg {
    fn name(&self) -> Option<&str> {
        match self {
            KeySeg::Key(k) => Some(k),
            KeySeg::Name(k) => Some(k),
            KeySeg::Index(_) => None,
        }
    }
}

pub fn key_path_string(key: &[KeySeg]) -> String {
    let mut s = String::new();
    for seg in key {
        match (seg, seg.name()) {
            (_, Some(k)) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            (KeySeg::Index(i), None) => s.push_str(&format!("[{i}]")),
            _ => {}
        }
    }
    s
}

/// What the validation passes report problems to.
pub type Bad<'a> = dyn FnMut(Vec<KeySeg>, String) + 'a;

/// 1-based line and column (in characters) of byte offset `pos`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, text[line_start..pos].chars().count() + 1)
}

/// The span of the value at `key` in the document, or of the nearest table
/// that exists when the key itself is absent (a default was used).
pub fn span_of(text: &str, key: &[KeySeg]) -> Option<std::ops::Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut span = None;
    let mut cur: &DeValue<'_> = &DeValue::Table(root.get_ref().clone());
    for seg in key {
        let next = match (seg, cur) {
            (KeySeg::Key(_) | KeySeg::Name(_), DeValue::Table(t)) => t
                .iter()
                .find(|(name, _)| Some(name.get_ref().as_ref()) == seg.name())
                .map(|(_, v)| v),
            (KeySeg::Index(i), DeValue::Array(a)) => a.get(*i),
            _ => None,
        };
        match next {
            Some(v) => {
                span = Some(v.span());
                cur = v.get_ref();
            }
            None => break,
        }
    }
    span
}
