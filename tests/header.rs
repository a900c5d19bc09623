//! The committed include/jsonbus.h must be what cbindgen generates from the sources now.

use std::path::Path;
use std::process::Command;

#[test]
fn generated_header_matches_the_fresh_generation() {
    let fresh = std::fs::read_to_string(Path::new(env!("OUT_DIR")).join("jsonbus.h")).unwrap();
    let include =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/jsonbus.h"))
            .unwrap();
    assert_eq!(fresh, include, "build.rs writes both; they must agree");
}

#[test]
fn committed_header_is_not_stale() {
    // The build rewrites include/jsonbus.h; compare it with the copy in git's index (what a
    // commit would hold; on a clean checkout, the committed one).
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("git")
        .args(["-C", dir, "show", ":include/jsonbus.h"])
        .output();
    let committed = match out {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap(),
        _ => {
            eprintln!("not a git checkout: cannot compare include/jsonbus.h with a committed copy");
            return;
        }
    };
    let fresh = std::fs::read_to_string(Path::new(env!("OUT_DIR")).join("jsonbus.h")).unwrap();
    assert!(
        committed == fresh,
        "include/jsonbus.h is stale: the sources generate a different header. Build, then commit include/jsonbus.h."
    );
}

#[test]
fn header_documents_every_item() {
    let header = std::fs::read_to_string(Path::new(env!("OUT_DIR")).join("jsonbus.h")).unwrap();
    let lines: Vec<&str> = header.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let item = line.starts_with("#define JSONBUS_")
            || (line.contains('(') && line.ends_with(");") && !line.starts_with(' '))
            || line.starts_with("typedef");
        if item
            && !line.starts_with("#define JSONBUS_VERSION")
            && !line.starts_with("#define JSONBUS_H")
        {
            let above = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap();
            assert!(above.trim_end().ends_with("*/"), "undocumented: {line}");
        }
    }
    for name in [
        "JSONBUS_VERSION_MAJOR",
        "JSONBUS_VERSION_MINOR",
        "JSONBUS_VERSION_PATCH",
        "extern \"C\"",
        "#ifndef JSONBUS_H",
    ] {
        assert!(header.contains(name), "{name} missing");
    }
}
