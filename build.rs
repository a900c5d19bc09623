//! Generates include/jsonbus.h from the Rust sources with cbindgen (settings in cbindgen.toml).
//! The header is committed; a test fails when the committed copy differs from this output.

use std::path::Path;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&dir);
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // The shared library's soname, as a C library's: libjsonbus.so.<major>. Programs linked
    // against it record that name; `cmake --install` puts libjsonbus.so.<major>.<minor>.<patch>
    // with the libjsonbus.so.<major> and libjsonbus.so links beside it.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libjsonbus.so.{major}");
    }
    let mut config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let version =
        |part: &str| std::env::var(format!("CARGO_PKG_VERSION_{part}")).unwrap_or_default();
    config.after_includes = Some(format!(
        "\n/** The version of this header: jsonbus_version() returns the library's. */\n\
         #define JSONBUS_VERSION_MAJOR {}\n#define JSONBUS_VERSION_MINOR {}\n#define JSONBUS_VERSION_PATCH {}\n",
        version("MAJOR"),
        version("MINOR"),
        version("PATCH")
    ));
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    bindings.write_to_file(Path::new(&out).join("jsonbus.h"));
    bindings.write_to_file(dir.join("include").join("jsonbus.h"));
}
