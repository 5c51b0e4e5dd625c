//! Links the release sidecar with the functions it runs placed first (`link-order.txt`).
//!
//! Most of a sidecar's resident memory is its own code, and the kernel maps a binary's code a
//! folio (up to 2 MB) at a time: one executed function anywhere in a folio makes all of it
//! resident. Placing the functions a sidecar runs (from a callgrind profile of real traffic,
//! `bench/profile-sidecar --link-order`) side by side at the front of `.text` keeps its hot and
//! start-up code in the fewest folios. Its relative relocations are packed for the same reason.
//! See bench/README.md, "Code layout".

#![forbid(unsafe_code)]

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=SLUICE_LINK_ORDER");
    let file =
        Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("link-order.txt");
    let wanted = env::var("PROFILE").is_ok_and(|p| p == "release")
        && env::var("SLUICE_LINK_ORDER").map_or(true, |v| v != "0")
        && links_with_lld()
        && file.exists();
    if !wanted {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=sluice-proxy=-Wl,--symbol-ordering-file={}",
        file.display()
    );
    // Names this build does not have (other dependency versions, another toolchain) are
    // skipped; `bench/run` reports how many were found.
    println!("cargo:rustc-link-arg-bin=sluice-proxy=-Wl,--no-warn-symbol-ordering");
    // Relative relocations packed (DT_RELR): 5 KB instead of ~400 KB of `.rela.dyn`, all of
    // which the dynamic loader reads, so all of it was resident. The loader must know the
    // format (glibc 2.36); a binary links against the build host's glibc anyway.
    if host_glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bin=sluice-proxy=-Wl,-z,pack-relative-relocs");
    }
}

/// The build host's glibc version (`getconf GNU_LIBC_VERSION` → `glibc 2.36`) is at least
/// `major.minor`.
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .trim()
        .strip_prefix("glibc ")
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// Whether the sidecar is linked by rustc's bundled LLD, which reads a symbol ordering file
/// (GNU ld does not): the default for `x86_64-unknown-linux-gnu` since Rust 1.90, unless the
/// build chooses its own linker.
fn links_with_lld() -> bool {
    if env::var("TARGET").map_or(true, |t| t != "x86_64-unknown-linux-gnu") {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || flags.contains("link-self-contained") {
        return false;
    }
    if env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let minor = text
        .lines()
        .find_map(|l| l.strip_prefix("release: 1."))
        .and_then(|rest| rest.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
