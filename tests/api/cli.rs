//! The command line: help, version and usage errors, without a database.

use std::process::{Command, Output};

fn minicrm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minicrm"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("running the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_command_has_help_and_exits_0() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["seed", "--help"],
        &["openapi", "--help"],
    ] {
        let out = minicrm(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains("Usage: minicrm"), "{args:?}");
    }
    let seed = text(&minicrm(&["seed", "--help"]).stdout);
    assert!(
        seed.contains("--orgs") && seed.contains("--deals-per-org"),
        "{seed}"
    );
}

#[test]
fn version_prints_the_crate_version() {
    let out = minicrm(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("minicrm {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    for args in [
        &["bogus"][..],
        &["seed", "--orgs"],
        &["seed", "--orgs", "0"],
        &["seed", "--deals-per-org", "many"],
        &["migrate", "--unknown"],
    ] {
        let out = minicrm(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("Usage: minicrm") || err.contains("--help"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn openapi_prints_the_document_without_a_database() {
    let out = minicrm(&["openapi"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc,
        serde_json::to_value(minicrm::http::openapi()).unwrap(),
        "the printed document is the served one"
    );
}

#[test]
fn a_malformed_cors_setting_is_refused_at_startup() {
    let out = Command::new(env!("CARGO_BIN_EXE_minicrm"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env("CORS_ALLOWED_ORIGINS", "https://app.example.com/")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("CORS_ALLOWED_ORIGINS"), "{err}");
}
