//! The manual against the code: every key the parser accepts is documented
//! under its table in unitwatch.toml(5) and shown in the shipped config,
//! every documented key is accepted, and the pages list every command,
//! event and endpoint.

use super::*;
use crate::config::Config;

/// The page's source with roff's escaped hyphens made plain again.
fn text(page: Vec<u8>) -> String {
    String::from_utf8(page).unwrap().replace("\\-", "-")
}

#[test]
fn every_documented_key_is_accepted_by_the_parser() {
    // deny_unknown_fields: a documented key the schema lacks fails here.
    let mut doc = String::new();
    let mut table = "";
    for key in CONFIG_KEYS {
        if key.table != table {
            table = key.table;
            doc.push_str(&format!("\n[{table}]\n"));
        }
        doc.push_str(&format!("{} = {}\n", key.key, key.example));
    }
    // serde only: the [[alert]] table holds the keys of every type at
    // once, which the validation pass rightly refuses.
    toml::from_str::<Config>(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
}

#[test]
fn every_key_of_the_shipped_config_is_documented() {
    let pairs = shipped_keys();
    let missing: Vec<String> = pairs
        .iter()
        .filter(|(table, key)| !CONFIG_KEYS.iter().any(|d| d.table == table && d.key == key))
        .map(|(table, key)| format!("{table}.{key}"))
        .collect();
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
    // And the other way: the shipped file shows every documented key,
    // if only in a comment, under its own table.
    let absent: Vec<String> = CONFIG_KEYS
        .iter()
        .filter(|d| !pairs.iter().any(|(t, k)| t == d.table && k == d.key))
        .map(|d| format!("{}.{}", d.table, d.key))
        .collect();
    assert!(
        absent.is_empty(),
        "keys the shipped config does not show under their table: {absent:?}"
    );
}

/// The keys the parser accepts, table by table, asked of the parser
/// itself: `deny_unknown_fields` answers an unknown key with the list of
/// the fields it expected. Tables are named as in [`KeyDoc::table`]
/// (`[unit]` for the array of tables `[[unit]]`).
fn parser_keys() -> Vec<(String, Vec<String>)> {
    fn expected(doc: &str) -> Option<Vec<String>> {
        let err = toml::from_str::<Config>(doc).err()?.to_string();
        let list = err.split_once("unknown field `zz_probe`, expected ")?.1;
        let list = list.lines().next().unwrap_or_default();
        Some(
            list.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect(),
        )
    }
    let top = expected("zz_probe = 1").expect("the root is deny_unknown_fields");
    let mut out = Vec::new();
    for t in top {
        if let Some(keys) = expected(&format!("[{t}]\nzz_probe = 1\n")) {
            out.push((t, keys));
        } else if let Some(keys) = expected(&format!("[[{t}]]\nzz_probe = 1\n")) {
            out.push((format!("[{t}]"), keys));
        } else {
            panic!("table {t}: the parser lists no fields for an unknown key");
        }
    }
    out
}

/// The (table, key) pairs the shipped config shows, if only in a
/// comment, each under its own table header (a line of prose with an '='
/// in it is no key: its left side has spaces).
fn shipped_keys() -> Vec<(String, String)> {
    let shipped = include_str!("../../packaging/unitwatch.toml");
    let mut table = String::new();
    let mut out = Vec::new();
    for line in shipped.lines() {
        let l = line.trim_start_matches('#').trim();
        if let Some(t) = l.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            table = t.to_string();
        } else if let Some((key, _)) = l.split_once(" = ") {
            let key = key.trim();
            if !key.contains(' ') {
                out.push((table.clone(), key.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_key_the_parser_accepts_is_in_the_manual_and_the_shipped_config() {
    let tables = parser_keys();
    // The probe sees what is there (a broken probe would find nothing).
    let daemon = &tables.iter().find(|(t, _)| t == "daemon").unwrap().1;
    assert!(daemon.iter().any(|k| k == "interval"), "{daemon:?}");
    assert!(tables.iter().any(|(t, _)| t == "[unit]"), "{tables:?}");
    let page = text(config_page().unwrap());
    let sections: Vec<(&str, &str)> = page
        .split("\n.SS ")
        .skip(1)
        .map(|s| s.split_once('\n').unwrap_or((s, "")))
        .collect();
    let shipped = shipped_keys();
    let mut missing = Vec::new();
    for (table, keys) in &tables {
        let heading = format!("[{table}]");
        let section = sections
            .iter()
            .find(|(h, _)| h.trim() == heading)
            .map(|(_, body)| *body);
        for key in keys {
            if !CONFIG_KEYS.iter().any(|d| d.table == table && d.key == key) {
                missing.push(format!("{table}.{key}: not in manual::CONFIG_KEYS"));
            }
            if !section.is_some_and(|s| s.contains(&format!("\\fB{key}\\fR"))) {
                missing.push(format!(
                    "{table}.{key}: not under {heading} in unitwatch.toml(5)"
                ));
            }
            if !shipped.iter().any(|(t, k)| t == table && k == key) {
                missing.push(format!(
                    "{table}.{key}: not under {heading} in packaging/unitwatch.toml"
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_example_is_a_valid_config() {
    let c = Config::parse(EXAMPLE, Path::new("example.toml")).unwrap();
    assert_eq!(c.units.len(), 2);
    assert_eq!(c.heartbeats.len(), 1);
}

#[test]
fn unitwatchd_page_lists_every_command_and_event() {
    let page = text(unitwatchd_page().unwrap());
    assert!(page.contains("\n.TH unitwatchd 8 "), "{}", &page[..200]);
    for cmd in [
        "unitwatchd run",
        "unitwatchd check",
        "unitwatchd config check",
        "unitwatchd config watches",
        "unitwatchd backoff show",
        "unitwatchd backoff reset",
        "unitwatchd alert test",
    ] {
        assert!(page.contains(cmd), "{cmd} missing");
    }
    for kind in Kind::ALL {
        assert!(page.contains(kind.as_str()), "{} missing", kind.as_str());
    }
    assert!(page.contains("--config"), "global option missing");
}

#[test]
fn config_page_documents_every_key_under_its_table() {
    let page = text(config_page().unwrap());
    for key in CONFIG_KEYS {
        assert!(
            page.contains(&format!("\\fB{}\\fR", key.key)),
            "{}",
            key.key
        );
    }
    for table in [
        "[daemon]",
        "[backoff]",
        "[[unit]]",
        "[[heartbeat]]",
        "[[disk]]",
        "[memory]",
        "[[alert]]",
        "[http]",
    ] {
        assert!(page.contains(table), "{table} missing");
    }
}

#[test]
fn http_page_lists_the_endpoints() {
    let page = text(unitwatch_http_page().unwrap());
    for path in ["/health", "/health/detailed", "/metrics"] {
        assert!(page.contains(path), "{path}");
    }
}

#[test]
fn write_all_writes_gzipped_pages_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_all(dir.path()).unwrap();
    assert_eq!(files.len(), 6);
    let gz = std::fs::read(dir.path().join("man/unitwatch.toml.5.gz")).unwrap();
    // No time stamp in the header (bytes 4..8), for reproducible builds.
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
    let bash = std::fs::read_to_string(dir.path().join("completions/unitwatchd")).unwrap();
    assert!(bash.contains("backoff") && bash.contains("watches"));
}
