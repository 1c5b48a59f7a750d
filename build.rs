//! Build script: only for the Debian package. Building with the `deb` profile (`cargo deb`, which
//! `[package.metadata.deb] profile` points at; `deb-check` for `scripts/check-deb --fast`), it
//! writes what the package ships besides the binary into `target/<profile>/assets/`: the man page
//! and the bash, zsh and fish completions, generated from the same clap definition as `--help`
//! by `examples/assets.rs`, and the documentation gzip-compressed as Debian policy asks. So a plain
//! `cargo deb` works on a clean clone, and the man page can never lag the flags.
//!
//! Every other profile (dev, test, release, `scripts/serve`) returns at once: the generator needs
//! the hitcore library built, which it gets from a nested `cargo run --example assets` in a target
//! directory of its own (`target/deb-assets`, so the outer build's lock is not waited on). It must
//! not write outside `target/`, and it changes nothing the library or binary is compiled from.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Documentation shipped under /usr/share/doc/hitcore, compressed (the copyright file is not: policy).
const DOCS: &[&str] = &["README.md", "CHANGELOG.md", "docs/deploy.md", "docs/observability.md"];

fn main() {
    for path in
        ["build.rs", "src", "examples/assets.rs", "Cargo.toml", "Cargo.lock", "README.md", "CHANGELOG.md", "docs"]
    {
        println!("cargo::rerun-if-changed={path}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is target/<profile>/build/hitcore-<hash>/out.
    let Some(profile_dir) = out.ancestors().nth(3) else { return };
    let profile = profile_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if profile != "deb" && profile != "deb-check" {
        return;
    }
    let assets = profile_dir.join("assets");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let nested = profile_dir.parent().expect("target/<profile> has a parent").join("deb-assets");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The outer build's flags are for the package's profile, not for the generator.
    let status = Command::new(cargo)
        .current_dir(&manifest)
        .args(["run", "--locked", "--quiet", "--example", "assets", "--target-dir"])
        .arg(&nested)
        .arg("--")
        .arg(&assets)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_PROFILE_RELEASE_LTO")
        .env_remove("CARGO_PROFILE_RELEASE_DEBUG")
        .status()
        .expect("run cargo for examples/assets.rs");
    assert!(status.success(), "examples/assets.rs failed: {status}");
    // Compressed here: cargo-deb compresses man pages only when it does not count them as built.
    gzip(&assets.join("hitcore.1"), &assets.join("hitcore.1.gz"));
    let doc = assets.join("doc");
    std::fs::create_dir_all(&doc).expect("create target/<profile>/assets/doc");
    for file in DOCS {
        gzip(&manifest.join(file), &doc.join(format!("{}.gz", Path::new(file).file_name().unwrap().to_string_lossy())));
    }
}

/// `gzip -9 -n` (no name or time stamp, so the package is reproducible) of `from` into `to`.
fn gzip(from: &Path, to: &Path) {
    let input = std::fs::File::open(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    let output = std::fs::File::create(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let status = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(input)
        .stdout(output)
        .status()
        .expect("gzip (Debian's essential gzip package)");
    assert!(status.success(), "gzip {}: {status}", from.display());
}
