//! TLS to PostgreSQL (src/db/tls.rs). scripts/test starts a second cluster
//! for these tests on 127.0.0.1:$TEST_TLS_PG_PORT: `ssl = on`, pg_hba
//! `hostssl … trust` and `hostnossl … reject`, and a server certificate for
//! `DNS:localhost` only, signed by $TEST_TLS_CA. $TEST_TLS_WRONG_CA is a CA
//! that signed nothing. The plain cluster of the other tests has no TLS.

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use minicrm::{
    db::{migrate, tls, Ctx, Db, PoolSettings},
    ops::config::Config,
};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::TestApp;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test"))
}

/// A URL of the TLS cluster.
fn tls_url(host: &str, db: &str, params: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/{db}?{params}",
        env("TEST_TLS_PG_PORT")
    )
}

/// A URL of the plain (non-TLS) cluster.
fn plain_url(db: &str, params: &str) -> String {
    format!("{}/{db}?{params}", env("TEST_DATABASE_URL"))
}

fn verify_full(host: &str, ca: &str) -> String {
    tls_url(
        host,
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    )
}

/// Connects the way migrate and seed do (`tls::parse`, then its config and
/// connector); the error as its message.
async fn app_connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let db = tls::parse(url).map_err(|e| e.to_string())?;
    let (client, connection) = db
        .config
        .connect(db.tls.clone())
        .await
        .map_err(|e| tls::error_chain(&e))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Whether this session is encrypted, from the server's side.
async fn session_ssl(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[track_caller]
fn assert_contains(text: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(text.contains(w), "{w:?} not in: {text}");
    }
}

fn settings() -> PoolSettings {
    PoolSettings {
        size: 2,
        wait_timeout: Duration::from_secs(2),
        // Longer than the cancel check waits, so only a cancel ends pg_sleep.
        statement_timeout: Duration::from_secs(60),
        transaction_pooler: false,
    }
}

/// The sessions of the request pool (application_name `minicrm`) in `db`,
/// and whether all are encrypted; seen by a superuser session.
async fn pool_sessions_ssl(admin: &tokio_postgres::Client, db: &str) -> (i64, Option<bool>) {
    let row = admin
        .query_one(
            "SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1 AND a.application_name = 'minicrm'",
            &[&db],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn require_migrates_and_serves_over_tls() {
    let admin = app_connect(&tls_url("127.0.0.1", "postgres", "sslmode=require"))
        .await
        .expect("sslmode=require connects without verifying");
    assert!(session_ssl(&admin).await);
    let name = format!("tls_{}", Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();

    let url = tls_url("127.0.0.1", &name, "sslmode=require");
    migrate::run(&url).await.expect("migrating over TLS");
    let app = TestApp::with_config(Config::for_database(url.clone()));
    let ada = app.register("ada").await;
    let me = app
        .get("/api/v1/users/me")
        .token(&ada.access_token)
        .send()
        .await;
    assert_eq!(me.ok(200)["email"], json!("ada@example.com"));
    app.get("/readyz").send().await.ok(200);

    let (sessions, all_ssl) = pool_sessions_ssl(&admin, &name).await;
    assert!(sessions >= 1, "no pooled session seen");
    assert_eq!(all_ssl, Some(true), "a pooled session is not encrypted");

    // An abandoned statement is cancelled (InFlight::drop), over TLS too.
    // Db::call takes named arguments, which pg_sleep has not: a wrapper.
    app_connect(&url)
        .await
        .unwrap()
        .batch_execute(
            "CREATE FUNCTION public.sleep_for(p_seconds float8) RETURNS void \
             LANGUAGE sql AS 'SELECT pg_sleep(p_seconds)'; \
             GRANT EXECUTE ON FUNCTION public.sleep_for(float8) TO minicrm_api",
        )
        .await
        .unwrap();
    let db = Db::connect(&settings(), &url).unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        db.call(Ctx::ANONYMOUS, "public.sleep_for", &[("p_seconds", &30f64)]),
    )
    .await;
    assert!(abandoned.is_err(), "sleep_for(30) ended: {abandoned:?}");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let running: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND state = 'active' AND query LIKE '%sleep_for(p_seconds => $3)%app.act_as%'",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        if running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned statement still runs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn verify_full_with_the_right_ca_and_host_name_is_encrypted() {
    let ca = env("TEST_TLS_CA");
    let url = verify_full("localhost", &ca);
    let parsed = tls::parse(&url).unwrap();
    assert_eq!(parsed.verification, tls::Verification::ChainAndHostName);
    assert_contains(&parsed.describe(), &["sslmode=verify-full", &ca]);

    // The migrate/seed path.
    let client = app_connect(&url).await.expect("verify-full by localhost");
    assert!(session_ssl(&client).await);
    let version: String = client
        .query_one(
            "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(version.starts_with("TLS"), "{version}");

    // The request pool: a statement through Db::call, then the pool's
    // sessions seen from the server (pg_stat_ssl hides other sessions from
    // the request role, so the check is made as the superuser).
    let name = format!("tlspool_{}", Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let db_url = format!(
        "postgres://postgres@localhost:{}/{name}?sslmode=verify-full&sslrootcert={ca}",
        env("TEST_TLS_PG_PORT")
    );
    let db = Db::connect(&settings(), &db_url).unwrap();
    db.ping()
        .await
        .expect("a pooled connection over verify-full");
    let (sessions, all_ssl) = pool_sessions_ssl(&client, &name).await;
    assert!(sessions >= 1, "no pooled session seen");
    assert_eq!(all_ssl, Some(true));
}

#[tokio::test]
async fn verify_full_by_ip_address_fails_on_the_host_name() {
    let err = app_connect(&verify_full("127.0.0.1", &env("TEST_TLS_CA")))
        .await
        .expect_err("the certificate names localhost only");
    assert_contains(
        &err,
        &[
            "TLS handshake",
            "certificate not valid for name",
            "127.0.0.1",
        ],
    );
    // verify-ca does not check the name, only the chain.
    let url = tls_url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-ca&sslrootcert={}", env("TEST_TLS_CA")),
    );
    let client = app_connect(&url).await.expect("verify-ca by IP address");
    assert!(session_ssl(&client).await);
}

#[tokio::test]
async fn a_wrong_ca_fails() {
    let wrong = env("TEST_TLS_WRONG_CA");
    for url in [
        verify_full("localhost", &wrong),
        tls_url(
            "localhost",
            "postgres",
            &format!("sslmode=verify-ca&sslrootcert={wrong}"),
        ),
        // As in libpq: require with a root file verifies the chain.
        tls_url(
            "localhost",
            "postgres",
            &format!("sslmode=require&sslrootcert={wrong}"),
        ),
        // No sslrootcert: the Mozilla roots, which did not sign the test CA.
        tls_url("localhost", "postgres", "sslmode=verify-full"),
    ] {
        let err = app_connect(&url).await.expect_err(&url);
        assert_contains(
            &err,
            &["TLS handshake", "invalid peer certificate", "UnknownIssuer"],
        );
    }
    // require with the right root file works.
    let url = tls_url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=require&sslrootcert={}", env("TEST_TLS_CA")),
    );
    assert!(session_ssl(&app_connect(&url).await.unwrap()).await);
}

#[tokio::test]
async fn disable_and_prefer_against_both_clusters() {
    // disable: plain on the plain cluster, refused by the TLS-only one.
    let plain = app_connect(&plain_url("postgres", "sslmode=disable"))
        .await
        .expect("disable on the plain cluster");
    assert!(!session_ssl(&plain).await);
    let err = app_connect(&tls_url("127.0.0.1", "postgres", "sslmode=disable"))
        .await
        .expect_err("the TLS cluster rejects hostnossl");
    assert_contains(&err, &["pg_hba.conf rejects connection", "no encryption"]);

    // prefer (the default): plain where TLS is not offered, TLS where it is.
    let plain = app_connect(&plain_url("postgres", "")).await.unwrap();
    assert!(!session_ssl(&plain).await);
    let encrypted = app_connect(&tls_url("127.0.0.1", "postgres", ""))
        .await
        .unwrap();
    assert!(session_ssl(&encrypted).await);

    // require insists.
    let err = app_connect(&plain_url("postgres", "sslmode=require"))
        .await
        .expect_err("the plain cluster has no TLS");
    assert_contains(&err, &["server does not support TLS"]);
}

#[test]
fn bad_tls_parameters_are_refused_by_the_parse() {
    let err = |url: &str| tls::parse(url).expect_err(url).to_string();
    assert_eq!(
        err("postgres://h/db?sslmode=verify_full"),
        "sslmode=\"verify_full\" is not valid: use disable, allow, prefer, require, verify-ca or verify-full"
    );
    assert_eq!(
        err("host=h sslmode=strict"),
        "sslmode=\"strict\" is not valid: use disable, allow, prefer, require, verify-ca or verify-full"
    );
    assert_contains(
        &err("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt"),
        &[
            "sslrootcert /nonexistent/ca.crt: cannot read the file",
            "No such file",
        ],
    );

    let dir = std::env::temp_dir().join(format!("minicrm-tls-{}", Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).unwrap();
    let not_pem = dir.join("not-pem.crt");
    std::fs::write(&not_pem, "hello\n").unwrap();
    assert_contains(
        &err(&format!(
            "host=h sslmode=verify-ca sslrootcert='{}'",
            not_pem.display()
        )),
        &[&not_pem.display().to_string(), "no certificate found"],
    );
    let broken = dir.join("broken.crt");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert_contains(
        &err(&format!(
            "postgres://h/db?sslmode=verify-full&sslrootcert={}",
            broken.display()
        )),
        &["broken.crt", "not usable as a CA certificate"],
    );
    assert_contains(
        &err(&format!("postgres://h/db?sslrootcert={}", dir.display())),
        &["cannot read the file"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn minicrm_migrate(database_url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minicrm"))
        .arg("migrate")
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET", "test-secret-test-secret-test-secret!")
        .env("RUST_LOG", "warn")
        .env_remove("LOG_FORMAT")
        .output()
        .expect("running minicrm")
}

#[test]
fn the_binary_refuses_bad_tls_settings_at_startup() {
    let out = minicrm_migrate("postgres://postgres@127.0.0.1:1/x?sslmode=bogus");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        &["DATABASE_URL", "sslmode=\"bogus\" is not valid"],
    );

    let out =
        minicrm_migrate("host=127.0.0.1 port=1 sslmode=verify-ca sslrootcert=/nonexistent/ca.crt");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        &["sslrootcert /nonexistent/ca.crt: cannot read the file"],
    );

    // A handshake failure shows when migrate connects. Logs go to stdout.
    let out = minicrm_migrate(&verify_full("127.0.0.1", &env("TEST_TLS_CA")));
    assert!(!out.status.success(), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains(
        &text,
        &[
            "connecting to the database to migrate",
            "sslmode=verify-full",
            "TLS handshake",
            "certificate not valid for name \"127.0.0.1\"",
        ],
    );
}
