//! Ages and growth on real files in a temporary directory (mtimes set as
//! `touch -d` sets them).

use super::*;
use std::fs::File;

fn probe(table: &str) -> Result<FreshnessProbe, String> {
    let t: toml::Table = toml::from_str(table).unwrap();
    let c = read(&t).map_err(|p| p.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join("; "))?;
    Ok(FreshnessProbe {
        window: c.window.unwrap_or(DEFAULT_WINDOW),
        config: c,
        busy: Arc::default(),
        growth: Mutex::default(),
    })
}

fn aged(path: &Path, age: Duration) {
    File::options()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

#[test]
fn a_directorys_newest_entry_ages_past_warn_then_crit() {
    let d = tempfile::tempdir().unwrap();
    let p = probe(&format!(
        "path = {:?}\nmax_age_warn = \"5m\"\nmax_age_crit = \"10m\"",
        d.path()
    ))
    .unwrap();
    let o = p.measure(SystemTime::now());
    assert_eq!(o.status, Status::Fail);
    assert_eq!(o.output, Some(format!("{} is empty", d.path().display()).into()));
    aged(&d.path().join("old"), Duration::from_secs(3600));
    aged(&d.path().join("new"), Duration::from_secs(60));
    let o = p.measure(SystemTime::now());
    assert_eq!(o.status, Status::Pass);
    assert!(o.output.as_deref().unwrap().contains("/new last written 1m"), "{o:?}");
    let o = p.measure(SystemTime::now() + Duration::from_secs(6 * 60));
    assert_eq!(o.status, Status::Warn);
    assert!(o.output.as_deref().unwrap().ends_with("ago (warn at 5m)"), "{o:?}");
    let o = p.measure(SystemTime::now() + Duration::from_secs(11 * 60));
    assert_eq!(o.status, Status::Fail);
    assert!(o.output.as_deref().unwrap().ends_with("(critical at 10m)"), "{o:?}");
    assert_eq!(o.measurements[0].name, "freshness_age_seconds");
    assert_eq!(o.measurements[0].labels["path"], d.path().display().to_string());
}

#[test]
fn a_glob_takes_its_newest_match_and_ctime_does_not_count() {
    let d = tempfile::tempdir().unwrap();
    let p = probe(&format!(
        "path = \"{}/*.csv\"\nmax_age_crit = \"10m\"",
        d.path().display()
    ))
    .unwrap();
    let o = p.measure(SystemTime::now());
    assert!(o.output.as_deref().unwrap().starts_with("nothing matches "), "{o:?}");
    aged(&d.path().join("a.csv"), Duration::from_secs(3600));
    // Newer, but not matched.
    aged(&d.path().join("b.txt"), Duration::from_secs(1));
    assert_eq!(p.measure(SystemTime::now()).status, Status::Fail);
    // A chmod moves the ctime only: still stale.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.path().join("a.csv"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(p.measure(SystemTime::now()).status, Status::Fail);
    aged(&d.path().join("c.csv"), Duration::from_secs(1));
    assert_eq!(p.measure(SystemTime::now()).status, Status::Pass);
}

#[test]
fn growth_survives_a_rotation_and_a_stall_fails() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    std::fs::write(&log, vec![b'x'; 100]).unwrap();
    let p = probe(&format!("path = {log:?}\nmin_growth = \"1KiB\"\nwindow = \"30s\"")).unwrap();
    let t0 = SystemTime::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let append = |n: usize| {
        use std::io::Write;
        File::options().append(true).open(&log).unwrap().write_all(&vec![b'x'; n]).unwrap();
    };
    let o = p.measure(at(0));
    assert_eq!(o.status, Status::Pass);
    assert!(o.output.as_deref().unwrap().contains("judged once watched for 30s"), "{o:?}");
    append(600);
    assert_eq!(p.measure(at(10)).status, Status::Pass);
    // Rotated: moved away, a new file with 700 bytes in its place.
    std::fs::rename(&log, d.path().join("app.log.1")).unwrap();
    std::fs::write(&log, vec![b'y'; 700]).unwrap();
    let o = p.measure(at(20));
    assert_eq!(o.status, Status::Pass);
    let o = p.measure(at(30));
    assert_eq!(o.status, Status::Pass, "600 + 700 bytes in 30 s: {o:?}");
    assert_eq!(o.measurements[1].value, 1300.0);
    // Truncated in place, then rewritten past its old size: new content.
    std::fs::write(&log, vec![b'z'; 2000]).unwrap();
    assert_eq!(p.measure(at(40)).status, Status::Pass);
    // Stalls: nothing more is written; once the window holds no growth,
    // it fails and says by how much.
    p.measure(at(55));
    let o = p.measure(at(75));
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert!(
        o.output.as_deref().unwrap().starts_with("grew 0 B in 30s (at least 1.0 KiB expected)"),
        "{o:?}"
    );
}

#[test]
fn bad_tables_name_the_key() {
    let why = |t: &str| match probe(t) {
        Err(p) => p,
        Ok(_) => panic!("accepted: {t}"),
    };
    assert!(why("path = \"data/out\"\nmax_age_crit = \"1m\"").contains("data/out is not an absolute path"));
    assert!(why("path = \"/x\"").contains("nothing to check"));
    assert!(why("path = \"/x/[\"\nmax_age_crit = \"1m\"").contains("not a valid glob"));
    assert!(why("path = \"/x\"\nmax_age_warn = \"10m\"\nmax_age_crit = \"1m\"").contains("10m is above max_age_crit (1m)"));
    assert!(why("path = \"/x/*\"\nmin_growth = \"1KiB\"").contains("needs path to be one file"));
    assert!(why("path = \"/x\"\nmax_age_crit = \"1m\"\nwindow = \"5m\"").contains("min_growth, which is not set"));
}

#[test]
fn a_relative_path_is_located_in_the_file() {
    let e = Config::parse(
        "[[check]]\ntype = \"freshness\"\nname = \"out\"\npath = \"data/out\"\nmax_age_crit = \"1m\"\n",
        Path::new("/etc/unitwatch/unitwatch.toml"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "/etc/unitwatch/unitwatch.toml:4:8: check[0].path: data/out is not an absolute path"
    );
}
