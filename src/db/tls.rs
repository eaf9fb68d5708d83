//! TLS to PostgreSQL with rustls.
//!
//! `sslmode` and `sslrootcert` in `DATABASE_URL` are read as libpq reads them,
//! in the URL form (`postgres://…?sslmode=verify-full&sslrootcert=/ca.crt`) and
//! in the key=value form (`host=db sslmode=require`). tokio-postgres only knows
//! `disable`, `prefer` and `require`, so both parameters are taken out of the
//! string before it reaches `tokio_postgres::Config`, and the certificate
//! checks they ask for are built into the rustls configuration instead.
//!
//! | sslmode | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | – |
//! | `allow`, `prefer` (default) | if the server offers it | not verified, unless `sslrootcert` is given: then the chain |
//! | `require` | required | not verified, unless `sslrootcert` is given: then the chain |
//! | `verify-ca` | required | chain |
//! | `verify-full` | required | chain and host name |
//!
//! Without `sslrootcert` (or with `sslrootcert=system`), chains are verified
//! against the Mozilla roots compiled in from `webpki-roots`. As in libpq,
//! `sslrootcert=system` raises the default mode to `verify-full` and refuses
//! any weaker one.
//!
//! Every connection (the request pool, its cancel requests, migrations, the
//! seed) goes through [`parse`], so they all connect the same way.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        WebPkiServerVerifier,
    },
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
pub use tokio_postgres_rustls::MakeRustlsConnect;

/// `sslmode`, with libpq's six values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// Treated as `prefer`: TLS is tried first (libpq tries plain first).
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn from_value(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    fn for_tokio_postgres(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self {
            SslMode::Disable => Pg::Disable,
            SslMode::Allow | SslMode::Prefer => Pg::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is checked of the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Nothing (the connection is encrypted, but the server is not authenticated).
    None,
    /// The chain up to a trusted root, not the host name.
    Chain,
    /// The chain and the host name (or IP address) connected to.
    ChainAndHostName,
}

/// The roots a verified chain must end in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roots {
    /// The Mozilla root program, compiled in (`webpki-roots`).
    Mozilla,
    /// The certificates of an `sslrootcert` file.
    File(PathBuf),
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::Mozilla => f.write_str("the Mozilla root certificates (webpki-roots)"),
            Roots::File(path) => write!(f, "the CA certificates in {}", path.display()),
        }
    }
}

/// How to connect: the tokio-postgres configuration (`ssl_mode` set) and the
/// TLS connector to hand to `connect`, `Manager::from_config` or `cancel_query`.
#[derive(Clone)]
pub struct DbConnect {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub mode: SslMode,
    pub verification: Verification,
    /// `None` when nothing is verified.
    pub roots: Option<Roots>,
}

impl DbConnect {
    /// One line for logs and error messages, e.g. `sslmode=verify-full: TLS
    /// required, certificate chain and host name verified against …`.
    pub fn describe(&self) -> String {
        let tls = match self.mode {
            SslMode::Disable => return "sslmode=disable: no TLS".into(),
            SslMode::Allow | SslMode::Prefer => "TLS if the server offers it",
            _ => "TLS required",
        };
        let check = match (self.verification, &self.roots) {
            (Verification::Chain, Some(roots)) => {
                format!("certificate chain verified against {roots}")
            }
            (Verification::ChainAndHostName, Some(roots)) => {
                format!("certificate chain and host name verified against {roots}")
            }
            _ => "server certificate not verified".into(),
        };
        format!("sslmode={}: {tls}, {check}", self.mode)
    }
}

impl fmt::Debug for DbConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConnect")
            .field("config", &self.config) // tokio-postgres redacts the password
            .field("mode", &self.mode)
            .field("verification", &self.verification)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

/// Why a `DATABASE_URL` cannot be used. Messages never repeat the URL (it may
/// hold a password).
#[derive(Debug)]
pub enum TlsConfigError {
    UnknownSslMode(String),
    /// `sslrootcert=system` with a mode weaker than `verify-full` (as libpq).
    WeakModeWithSystemRoots(SslMode),
    RootCertUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    RootCertInvalid {
        path: PathBuf,
        reason: String,
    },
    /// The connection string itself (also what tokio-postgres refuses).
    Syntax(String),
    /// rustls refused the configuration.
    Rustls(String),
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::UnknownSslMode(value) => write!(
                f,
                "sslmode={value:?} is not valid: use disable, allow, prefer, require, verify-ca or verify-full"
            ),
            TlsConfigError::WeakModeWithSystemRoots(mode) => write!(
                f,
                "sslmode={mode} may not be used with sslrootcert=system (use verify-full)"
            ),
            TlsConfigError::RootCertUnreadable { path, source } => {
                write!(f, "sslrootcert {}: cannot read the file: {source}", path.display())
            }
            TlsConfigError::RootCertInvalid { path, reason } => {
                write!(f, "sslrootcert {}: {reason}", path.display())
            }
            TlsConfigError::Syntax(message) => write!(f, "invalid connection string: {message}"),
            TlsConfigError::Rustls(message) => write!(f, "TLS configuration: {message}"),
        }
    }
}

impl std::error::Error for TlsConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsConfigError::RootCertUnreadable { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads `DATABASE_URL` (URL or key=value form): the connection settings,
/// `sslmode` (default `prefer`) and `sslrootcert` (read and checked now).
pub fn parse(database_url: &str) -> Result<DbConnect, TlsConfigError> {
    let (rest, params) = take_tls_params(database_url)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        // Its text is "invalid connection string"; the reason is the source.
        TlsConfigError::Syntax(match std::error::Error::source(&e) {
            Some(reason) => error_chain(reason),
            None => e.to_string(),
        })
    })?;

    let system_roots = params.sslrootcert.as_deref() == Some("system");
    let mode = match params.sslmode.as_deref() {
        None if system_roots => SslMode::VerifyFull,
        None => SslMode::Prefer,
        Some(value) => SslMode::from_value(value)
            .ok_or_else(|| TlsConfigError::UnknownSslMode(value.to_owned()))?,
    };
    if system_roots && mode != SslMode::VerifyFull {
        return Err(TlsConfigError::WeakModeWithSystemRoots(mode));
    }
    // A file is read (and so checked) whenever given, even when the mode does
    // not use it, so that a typo shows at startup.
    let file_roots = match params.sslrootcert.as_deref() {
        Some(path) if !system_roots => {
            let path = PathBuf::from(path);
            let store = load_roots(&path)?;
            Some((path, store))
        }
        _ => None,
    };

    let verification = match mode {
        SslMode::Disable => Verification::None,
        SslMode::Allow | SslMode::Prefer | SslMode::Require if file_roots.is_none() => {
            Verification::None
        }
        // libpq: "if a root CA file exists, require behaves like verify-ca".
        SslMode::Allow | SslMode::Prefer | SslMode::Require | SslMode::VerifyCa => {
            Verification::Chain
        }
        SslMode::VerifyFull => Verification::ChainAndHostName,
    };
    let (roots, store) = match (verification, file_roots) {
        (Verification::None, _) => (None, None),
        (_, Some((path, store))) => (Some(Roots::File(path)), Some(store)),
        (_, None) => (Some(Roots::Mozilla), Some(mozilla_roots())),
    };

    config.ssl_mode(mode.for_tokio_postgres());
    let client_config = client_config(verification, store)?;
    Ok(DbConnect {
        config,
        tls: MakeRustlsConnect::new(client_config),
        mode,
        verification,
        roots,
    })
}

/// An error and its sources, `: `-separated (tokio-postgres errors name
/// only their kind; the cause is the source).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The crypto provider: ring, passed explicitly (no process-wide default).
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn mozilla_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsConfigError> {
    let invalid = |reason: String| TlsConfigError::RootCertInvalid {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|source| TlsConfigError::RootCertUnreadable {
        path: path.to_owned(),
        source,
    })?;
    let mut store = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| invalid(format!("not a PEM certificate file: {e}")))?;
        store.add(cert).map_err(|e| {
            invalid(format!(
                "certificate {} is not usable as a CA certificate: {e}",
                i + 1
            ))
        })?;
    }
    if store.is_empty() {
        return Err(invalid(
            "no certificate found (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(store)
}

fn client_config(
    verification: Verification,
    roots: Option<RootCertStore>,
) -> Result<ClientConfig, TlsConfigError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    let roots = Arc::new(roots.unwrap_or_else(RootCertStore::empty));
    let webpki = || {
        WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))
    };
    Ok(match verification {
        Verification::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth(),
        Verification::Chain => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki()?)))
            .with_no_client_auth(),
        Verification::ChainAndHostName => builder
            .with_webpki_verifier(webpki()?)
            .with_no_client_auth(),
    })
}

/// `prefer`/`require` without a root file: any certificate is accepted, but
/// the handshake signatures are still checked (the session key belongs to
/// whoever holds the certificate's key).
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: webpki's verification, except for the host name. webpki
/// checks the chain (validity, issuer, signatures) before the name, so a
/// name mismatch means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `sslmode` and `sslrootcert` as given (decoded); the last one wins, as in libpq.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsParams {
    sslmode: Option<String>,
    /// An empty value counts as not given (as in libpq).
    sslrootcert: Option<String>,
}

impl TlsParams {
    /// Takes the parameter if it is one of ours.
    fn take(&mut self, key: &str, value: String) -> bool {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value).filter(|v| !v.is_empty()),
            _ => return false,
        }
        true
    }
}

/// The connection string without `sslmode` and `sslrootcert`, and their values.
fn take_tls_params(s: &str) -> Result<(String, TlsParams), TlsConfigError> {
    for prefix in ["postgres://", "postgresql://"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return take_from_url(prefix, rest);
        }
    }
    take_from_key_values(s)
}

fn decode(text: &str, what: &str) -> Result<String, TlsConfigError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| TlsConfigError::Syntax(format!("{what}: invalid percent-encoding")))
}

/// URL form. The query starts at the first `?` after the credentials (the
/// part up to the first `@`), as tokio-postgres and libpq read it.
fn take_from_url(prefix: &str, rest: &str) -> Result<(String, TlsParams), TlsConfigError> {
    let after_credentials = rest.find('@').map_or(0, |i| i + 1);
    let Some(q) = rest[after_credentials..]
        .find('?')
        .map(|i| after_credentials + i)
    else {
        return Ok((format!("{prefix}{rest}"), TlsParams::default()));
    };
    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    for pair in rest[q + 1..].split('&').filter(|p| !p.is_empty()) {
        let taken = match pair.split_once('=') {
            Some((key, value)) => {
                let key = decode(key, "query parameter name")?;
                let value = if key == "sslmode" || key == "sslrootcert" {
                    decode(value, &key)?
                } else {
                    String::new()
                };
                params.take(&key, value)
            }
            None => false,
        };
        if !taken {
            kept.push(pair);
        }
    }
    let mut url = format!("{prefix}{}", &rest[..q]);
    if !kept.is_empty() {
        url.push('?');
        url.push_str(&kept.join("&"));
    }
    Ok((url, params))
}

/// key=value form, tokenized as tokio-postgres (and libpq) do: whitespace
/// around `=` allowed, values bare (backslash escapes) or single-quoted.
fn take_from_key_values(s: &str) -> Result<(String, TlsParams), TlsConfigError> {
    let syntax = |m: &str| TlsConfigError::Syntax(m.to_owned());
    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = it.next_if(|&c| !c.is_whitespace() && c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            if it.peek().is_some() {
                return Err(syntax("a parameter name is missing before `=`"));
            }
            break;
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.next() != Some('=') {
            return Err(TlsConfigError::Syntax(format!("expected `=` after {key}")));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(it.next()),
                    Some(c) => value.push(c),
                    None => return Err(syntax("unterminated quoted connection parameter value")),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return Err(TlsConfigError::Syntax(format!("{key}: value missing")));
            }
        }
        if !params.take(&key, value.clone()) {
            kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    Ok((kept.join(" "), params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (String, Option<String>, Option<String>) {
        let (rest, p) = take_tls_params(s).unwrap();
        (rest, p.sslmode, p.sslrootcert)
    }

    #[test]
    fn url_parameters_are_taken_out() {
        assert_eq!(
            split("postgres://u:p%3F@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.crt"),
            (
                "postgres://u:p%3F@h:5/db?application_name=x".into(),
                Some("verify-full".into()),
                Some("/tmp/ca.crt".into())
            )
        );
        assert_eq!(
            split("postgresql://h/db?sslmode=require"),
            ("postgresql://h/db".into(), Some("require".into()), None)
        );
        // A `?` in the password is not the query.
        assert_eq!(
            split("postgres://u:a?b@h/db"),
            ("postgres://u:a?b@h/db".into(), None, None)
        );
        // The last one wins; an empty sslrootcert is no sslrootcert.
        assert_eq!(
            split("postgres://h/db?sslmode=disable&sslmode=verify-ca&sslrootcert="),
            ("postgres://h/db".into(), Some("verify-ca".into()), None)
        );
    }

    #[test]
    fn key_value_parameters_are_taken_out() {
        assert_eq!(
            split(
                r"host=h  sslmode = verify-ca password='it\'s' sslrootcert='/a b/ca.crt' user=u\ v"
            ),
            (
                r"host='h' password='it\'s' user='u v'".into(),
                Some("verify-ca".into()),
                Some("/a b/ca.crt".into())
            )
        );
    }

    #[test]
    fn key_value_rebuilt_string_parses_the_same() {
        let (rest, _) = take_tls_params(r"host=h password='a\'b\\c d' sslmode=require").unwrap();
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"a'b\\c d"[..]));
    }

    #[test]
    fn modes() {
        let mode = |url: &str| parse(url).map(|c| (c.mode, c.verification));
        assert_eq!(
            mode("postgres://h/db").unwrap(),
            (SslMode::Prefer, Verification::None)
        );
        assert_eq!(
            mode("host=h sslmode=require").unwrap(),
            (SslMode::Require, Verification::None)
        );
        assert_eq!(
            mode("postgres://h/db?sslmode=verify-ca").unwrap(),
            (SslMode::VerifyCa, Verification::Chain)
        );
        assert_eq!(
            mode("postgres://h/db?sslrootcert=system").unwrap(),
            (SslMode::VerifyFull, Verification::ChainAndHostName)
        );
        assert!(matches!(
            mode("postgres://h/db?sslmode=require&sslrootcert=system"),
            Err(TlsConfigError::WeakModeWithSystemRoots(SslMode::Require))
        ));
        let err = mode("postgres://h/db?sslmode=verify_full").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("sslmode=\"verify_full\" is not valid"));
        let err =
            mode("postgres://h/db?sslmode=require&sslrootcert=/nonexistent/ca.crt").unwrap_err();
        assert!(err
            .to_string()
            .contains("/nonexistent/ca.crt: cannot read the file"));
    }
}
