//! Writes the man pages and shell completions (src/manual.rs) below the
//! directory given; scripts/build-deb packages them.
//! Usage: cargo run --example gen-manual -- DIR

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: gen-manual DIR");
        return std::process::ExitCode::from(2);
    };
    match unitwatch::manual::write_all(std::path::Path::new(&dir)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-manual: {}: {e}", std::path::Path::new(&dir).display());
            std::process::ExitCode::FAILURE
        }
    }
}
