//! The manual against the code: every key the parser accepts is documented
//! under its table in unitwatch.toml(5) and shown in the shipped config,
//! every documented key is accepted, and the pages list every command,
//! event and endpoint.

use super::*;
use crate::config::Config;

/// The page's source with roff's escaped hyphens made plain again.
fn text(page: Vec<u8>) -> String {
    String::from_utf8(page)
        .unwrap()
        .replace("\\-", "-")
        .replace("\\ ", " ")
}

#[test]
fn every_documented_key_is_accepted_by_the_parser() {
    // deny_unknown_fields: a documented key the schema lacks fails here.
    let mut doc = String::new();
    let mut table = "";
    for key in config_keys().iter().filter(|k| k.table != "[check]") {
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
fn every_check_type_takes_all_its_documented_keys_at_once() {
    // Each example together is a valid check, through serde and the
    // validation pass alike.
    for kind in crate::checks::kind::check_kind_names() {
        let mut doc = String::from("[[unit]]\nname = \"gateway.service\"\n[[check]]\n");
        for key in config_keys()
            .iter()
            .filter(|k| k.table == "[check]" && (k.kind.is_empty() || k.kind == kind))
        {
            let example = if key.key == "type" {
                format!("{kind:?}")
            } else {
                key.example.to_string()
            };
            doc.push_str(&format!("{} = {}\n", key.key, example));
        }
        Config::parse(&doc, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}\n{doc}"));
    }
}

#[test]
fn every_key_of_the_shipped_config_is_documented() {
    let pairs = shipped_keys();
    let keys = config_keys();
    let missing: Vec<String> = pairs
        .iter()
        .filter(|(table, kind, key)| !keys.iter().any(|d| documents(d, table, kind, key)))
        .map(|(table, kind, key)| format!("{table}{kind}.{key}"))
        .collect();
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
    // And the other way: the shipped file shows every documented key,
    // if only in a comment, under its own table.
    let absent: Vec<String> = keys
        .iter()
        .filter(|d| {
            !pairs.iter().any(|(t, kind, k)| {
                t == d.table && k == d.key && (d.kind.is_empty() || d.kind == kind)
            })
        })
        .map(|d| format!("{}{}.{}", d.table, d.kind, d.key))
        .collect();
    assert!(
        absent.is_empty(),
        "keys the shipped config does not show under their table: {absent:?}"
    );
}

/// Does `d` document `key` of `table` (of a `[[check]]` of type `kind`)?
fn documents(d: &KeyDoc, table: &str, kind: &str, key: &str) -> bool {
    d.table == table && d.key == key && (d.kind.is_empty() || d.kind == kind)
}

/// The keys the parser accepts, table by table, asked of the parser
/// itself: `deny_unknown_fields` answers an unknown key with the list of
/// the fields it expected. Tables are named as in [`KeyDoc::table`]
/// (`[unit]` for the array of tables `[[unit]]`).
fn parser_keys() -> Vec<(String, String, Vec<String>)> {
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
        if t == "check" {
            // [[check]] tables are read by their kind, which names the keys
            // of its type (the common ones and its own) the same way.
            for kind in crate::checks::kind::check_kind_names() {
                let doc = format!("[[check]]\ntype = \"{kind}\"\nname = \"x\"\nzz_probe = 1\n");
                let err = Config::parse(&doc, Path::new("t.toml"))
                    .unwrap_err()
                    .to_string();
                let list = err
                    .split_once("unknown field `zz_probe`, expected one of ")
                    .unwrap_or_else(|| panic!("{err}"))
                    .1;
                let keys = list
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect();
                out.push(("[check]".to_string(), kind.to_string(), keys));
            }
        } else if let Some(keys) = expected(&format!("[{t}]\nzz_probe = 1\n")) {
            out.push((t, String::new(), keys));
        } else if let Some(keys) = expected(&format!("[[{t}]]\nzz_probe = 1\n")) {
            out.push((format!("[{t}]"), String::new(), keys));
        } else {
            panic!("table {t}: the parser lists no fields for an unknown key");
        }
    }
    out
}

/// The (table, type, key) triples the shipped config shows, if only in a
/// comment, each under its own table header (a line of prose with an '='
/// in it is no key: its left side has spaces). The type is that of the
/// `[[check]]` the key is in ("" elsewhere).
fn shipped_keys() -> Vec<(String, String, String)> {
    let shipped = include_str!("../../packaging/unitwatch.toml");
    let mut table = String::new();
    let mut kind = String::new();
    let mut out = Vec::new();
    for line in shipped.lines() {
        let l = line.trim_start_matches('#').trim();
        if let Some(t) = l.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            table = t.to_string();
            kind.clear();
        } else if let Some((key, value)) = l.split_once(" = ") {
            let key = key.trim();
            if !key.contains(' ') {
                if table == "[check]" && key == "type" {
                    let v = value.split('#').next().unwrap_or_default();
                    kind = v.trim().trim_matches('"').to_string();
                }
                out.push((table.clone(), kind.clone(), key.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_key_the_parser_accepts_is_in_the_manual_and_the_shipped_config() {
    let tables = parser_keys();
    // The probe sees what is there (a broken probe would find nothing).
    let daemon = &tables.iter().find(|(t, _, _)| t == "daemon").unwrap().2;
    assert!(daemon.iter().any(|k| k == "interval"), "{daemon:?}");
    assert!(tables.iter().any(|(t, _, _)| t == "[unit]"), "{tables:?}");
    for kind in crate::checks::kind::check_kind_names() {
        let keys = &tables.iter().find(|(_, k, _)| k == kind).unwrap().2;
        assert!(keys.iter().any(|k| k == "fail_after"), "{kind}: {keys:?}");
    }
    let keys_doc = config_keys();
    let page = text(config_page().unwrap());
    let sections: Vec<(&str, &str)> = page
        .split("\n.SS ")
        .skip(1)
        .map(|s| s.split_once('\n').unwrap_or((s, "")))
        .collect();
    let shipped = shipped_keys();
    let mut missing = Vec::new();
    for (table, kind, keys) in &tables {
        for key in keys {
            let Some(doc) = keys_doc.iter().find(|d| documents(d, table, kind, key)) else {
                missing.push(format!("{table}{kind}.{key}: not in manual::config_keys()"));
                continue;
            };
            let heading = match doc.kind {
                "" => format!("[{table}]"),
                k => format!("[{table}] type = {k}"),
            };
            let section = sections
                .iter()
                .find(|(h, _)| h.trim().trim_matches('"') == heading)
                .map(|(_, body)| *body);
            if !section.is_some_and(|s| s.contains(&format!("\\fB{key}\\fR"))) {
                missing.push(format!(
                    "{table}.{key}: not under {heading} in unitwatch.toml(5)"
                ));
            }
            if !shipped
                .iter()
                .any(|(t, k, x)| t == table && x == key && (doc.kind.is_empty() || k == kind))
            {
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
        "unitwatchd config polkit-rules",
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
    for key in &config_keys() {
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
        "[[check]]",
        "[[alert]]",
        "[http]",
    ] {
        assert!(page.contains(table), "{table} missing");
    }
    for kind in crate::checks::kind::check_kind_names() {
        assert!(
            page.contains(&format!("[[check]] type = {kind}")),
            "{kind} missing"
        );
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
