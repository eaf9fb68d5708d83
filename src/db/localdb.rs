//! With no DATABASE_URL: a PostgreSQL cluster of the project's own under
//! `<data_dir>/postgres`, on loopback, started (or reused) on demand, plus a
//! JWT secret generated once and kept beside it. Developer convenience only.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};
use argon2::password_hash::rand_core::{OsRng, RngCore};

pub struct LocalDb {
    pub database_url: String,
    pub jwt_secret: String,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The directory of initdb/pg_ctl: on PATH, else Debian's newest install.
fn pg_bindir() -> anyhow::Result<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<u32> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    for v in versions.iter().rev() {
        let dir = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    bail!("PostgreSQL server binaries not found: install them (apt-get install postgresql) or set DATABASE_URL")
}

fn is_root() -> bool {
    // The effective uid, read from /proc rather than through libc.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` OS user when we are root
/// (initdb and postgres refuse to run as root).
fn pg_tool(bindir: &Path, tool: &str, args: &[&str]) -> anyhow::Result<()> {
    let program = bindir.join(tool);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    let out = cmd
        .args(args)
        .output()
        .with_context(|| format!("running {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn chown_postgres(path: &Path) -> anyhow::Result<()> {
    if is_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()?;
        if !status.success() {
            bail!("chown postgres {} failed", path.display());
        }
    }
    Ok(())
}

fn write_secret(path: &Path, value: &str) -> anyhow::Result<()> {
    fs::write(path, value)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn read_or_create_secret(path: &Path, bytes: usize) -> anyhow::Result<String> {
    if let Ok(s) = fs::read_to_string(path) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_owned());
        }
    }
    let s = random_hex(bytes);
    write_secret(path, &s)?;
    Ok(s)
}

pub async fn ensure(data_dir: &Path, port: u16) -> anyhow::Result<LocalDb> {
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let cluster = data_dir.join("postgres");
    let bindir = pg_bindir()?;
    let password = read_or_create_secret(&data_dir.join("postgres-password"), 24)?;
    let jwt_secret = read_or_create_secret(&data_dir.join("jwt-secret"), 48)?;

    if !cluster.join("PG_VERSION").exists() {
        tracing::info!(dir = %cluster.display(), "creating the local PostgreSQL cluster");
        fs::create_dir_all(&cluster)?;
        fs::set_permissions(&cluster, fs::Permissions::from_mode(0o700))?;
        chown_postgres(&cluster)?;
        let pwfile = data_dir.join("initdb-pwfile");
        write_secret(&pwfile, &password)?;
        chown_postgres(&pwfile)?;
        let result = pg_tool(
            &bindir,
            "initdb",
            &[
                "-D",
                &cluster.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
                // Case-insensitive email uniqueness folds non-ASCII letters too.
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
        );
        let _ = fs::remove_file(&pwfile);
        result?;
    }

    let running = pg_tool(
        &bindir,
        "pg_ctl",
        &["-D", &cluster.to_string_lossy(), "status"],
    )
    .is_ok();
    if !running {
        tracing::info!(port, "starting the local PostgreSQL cluster");
        let log = data_dir.join("postgres.log");
        if !log.exists() {
            fs::write(&log, "")?;
        }
        chown_postgres(&log)?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={}",
            cluster.display()
        );
        pg_tool(
            &bindir,
            "pg_ctl",
            &[
                "-D",
                &cluster.to_string_lossy(),
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
    }

    let base = format!("postgres://postgres:{password}@127.0.0.1:{port}");
    let (client, connection) =
        tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
            .await
            .context("connecting to the local cluster")?;
    let connection = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = 'minicrm'", &[])
        .await?
        .is_some();
    if !exists {
        client.batch_execute("CREATE DATABASE minicrm").await?;
    }
    drop(client);
    let _ = connection.await;

    let pgpass = data_dir.join("pgpass");
    write_secret(
        &pgpass,
        &format!("127.0.0.1:{port}:*:postgres:{password}\n"),
    )?;
    tracing::info!(
        "local database ready; psql: PGPASSFILE={} psql -h 127.0.0.1 -p {port} -U postgres minicrm",
        pgpass.display()
    );
    Ok(LocalDb {
        database_url: format!("{base}/minicrm"),
        jwt_secret,
    })
}
