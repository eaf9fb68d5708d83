//! Credentials: argon2id password hashes (computed off the async workers),
//! short-lived JWT access tokens, and opaque refresh tokens of which the
//! database only ever sees a SHA-256 hash.

use std::{
    collections::HashMap,
    sync::{mpsc, Arc, LazyLock, Mutex, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::oneshot;

use argon2::{
    password_hash::{rand_core::OsRng, rand_core::RngCore, PasswordHash, SaltString},
    Argon2, PasswordHasher, PasswordVerifier,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const ACCESS: &str = "access";

/// Seconds past `exp` that a token is still accepted (clock skew).
const LEEWAY_SECS: u64 = 5;

/// The most access tokens remembered as verified (about 200 bytes each).
const VERIFIED_CAPACITY: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    iat: i64,
    exp: i64,
    /// Marks the token as an access token; nothing else is accepted as one.
    typ: String,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Access tokens whose signature and claims were verified, by their exact
    /// text: the user and `exp`. A client sends the same token for its whole
    /// lifetime, and verifying it (two base64 decodings, two JSON parses, an
    /// HMAC with a fresh key schedule) was a third of the server's own
    /// instructions per request. Only a token that passed
    /// `jsonwebtoken::decode` gets in, an entry is refused as soon as the
    /// verifier would refuse the token (`exp` + leeway), and the cache belongs
    /// to this `Tokens`, that is to one secret: another secret is another cache.
    verified: RwLock<HashMap<Box<str>, Verified>>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

#[derive(Clone, Copy)]
struct Verified {
    user: Uuid,
    exp: u64,
}

impl Verified {
    /// The verifier's own rule (`jsonwebtoken::validation`): refused once
    /// `exp < now - leeway`.
    fn valid_at(self, now: u64) -> bool {
        self.exp >= now.saturating_sub(LEEWAY_SECS)
    }
}

/// Seconds since the epoch, the clock jsonwebtoken checks `exp` against.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tokens {
    pub fn new(secret: &str, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            verified: RwLock::default(),
            access_ttl,
            refresh_ttl,
        }
    }

    pub fn access_token(&self, user_id: Uuid) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            iat: now,
            exp: now + self.access_ttl.as_secs() as i64,
            typ: ACCESS.into(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The user an access token speaks for; None for anything else.
    pub fn verify_access(&self, token: &str) -> Option<Uuid> {
        self.verify_access_at(token, now_secs())
    }

    /// `verify_access` at the time `now`, for the cache (jsonwebtoken
    /// itself always reads the system clock).
    fn verify_access_at(&self, token: &str, now: u64) -> Option<Uuid> {
        let known = self
            .verified
            .read()
            .ok()
            .and_then(|verified| verified.get(token).copied());
        if let Some(known) = known {
            return known.valid_at(now).then_some(known.user);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        if data.claims.typ != ACCESS {
            return None;
        }
        let entry = Verified {
            user: data.claims.sub,
            exp: u64::try_from(data.claims.exp).ok()?,
        };
        if !entry.valid_at(now) {
            return None;
        }
        self.remember(token, entry, now);
        Some(entry.user)
    }

    /// Keeps a verified token; when the cache is full, forgets the expired
    /// ones, or all of them if none has expired (verifying again is only slower).
    fn remember(&self, token: &str, entry: Verified, now: u64) {
        let Ok(mut verified) = self.verified.write() else {
            return;
        };
        if verified.len() >= VERIFIED_CAPACITY {
            verified.retain(|_, v| v.valid_at(now));
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(token.into(), entry);
    }

    pub fn refresh_expires_at(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::Duration::from_std(self.refresh_ttl).unwrap_or(chrono::Duration::days(30))
    }
}

/// A new opaque refresh token and the hash the database keeps of it.
pub fn new_refresh_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hash = refresh_token_hash(&token);
    (token, hash)
}

pub fn refresh_token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Argon2id is CPU- and memory-bound (19 MiB a hash). Hashes run on a fixed
/// set of threads, one per core: more at once would only add memory, and
/// fixed threads keep the allocator's per-thread arenas (which retain freed
/// hash memory) bounded, unlike tokio's elastic blocking pool.
type Job = Box<dyn FnOnce() + Send>;

static HASHERS: LazyLock<Mutex<mpsc::Sender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for n in 0..std::thread::available_parallelism().map_or(2, |n| n.get()) {
        let rx = rx.clone();
        let _ = std::thread::Builder::new()
            .name(format!("argon2-{n}"))
            .spawn(move || loop {
                let job = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
    }
    Mutex::new(tx)
});

/// Runs `f` on a hashing thread.
async fn on_hasher<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    HASHERS
        .lock()
        .map_err(|_| anyhow::anyhow!("hashing threads poisoned"))?
        .send(job)
        .map_err(|_| anyhow::anyhow!("hashing threads gone"))?;
    Ok(rx.await?)
}

pub async fn hash_password(password: String) -> anyhow::Result<String> {
    on_hasher(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await?
}

/// Verifies against `hash`, or against a dummy hash when there is no user, so
/// an unknown email costs the same time as a wrong password.
pub async fn verify_password(password: String, hash: Option<String>, dummy: &'static str) -> bool {
    on_hasher(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| dummy.to_owned());
        let ok = PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        known && ok
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password with the default parameters, made once.
pub fn dummy_hash() -> String {
    let salt = SaltString::generate(&mut OsRng);
    let (password, _) = new_refresh_token();
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(secret: &str, ttl_secs: u64) -> Tokens {
        Tokens::new(
            secret,
            Duration::from_secs(ttl_secs),
            Duration::from_secs(3600),
        )
    }

    fn exp_of(tokens: &Tokens, token: &str) -> u64 {
        jsonwebtoken::decode::<Claims>(token, &tokens.decoding, &tokens.validation)
            .unwrap()
            .claims
            .exp as u64
    }

    #[test]
    fn a_remembered_token_expires_when_the_verifier_would_refuse_it() {
        let tokens = tokens("a-secret-of-at-least-32-characters!!", 60);
        let user = Uuid::new_v4();
        let token = tokens.access_token(user).unwrap();
        let exp = exp_of(&tokens, &token);
        let now = now_secs();
        assert_eq!(tokens.verify_access_at(&token, now), Some(user));
        assert!(tokens.verified.read().unwrap().contains_key(token.as_str()));
        // Within the leeway, as jsonwebtoken accepts it; past it, refused
        // although the entry is still there.
        assert_eq!(
            tokens.verify_access_at(&token, exp + LEEWAY_SECS),
            Some(user)
        );
        assert_eq!(tokens.verify_access_at(&token, exp + LEEWAY_SECS + 1), None);
        assert!(tokens.verified.read().unwrap().contains_key(token.as_str()));
    }

    #[test]
    fn only_verified_access_tokens_are_remembered() {
        let tokens = tokens("a-secret-of-at-least-32-characters!!", 60);
        let token = tokens.access_token(Uuid::new_v4()).unwrap();
        // A forged signature, another typ, garbage: refused, and not kept.
        let (head, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{head}.AAAA");
        let now = chrono::Utc::now().timestamp();
        let refresh_typ = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: Uuid::new_v4(),
                iat: now,
                exp: now + 60,
                typ: "refresh".into(),
            },
            &tokens.encoding,
        )
        .unwrap();
        for bad in [forged.as_str(), refresh_typ.as_str(), "not.a.token", ""] {
            assert_eq!(tokens.verify_access(bad), None, "{bad}");
            assert_eq!(tokens.verify_access(bad), None, "{bad}");
        }
        assert!(tokens.verified.read().unwrap().is_empty());
    }

    #[test]
    fn another_secret_does_not_know_the_token() {
        let first = tokens("a-secret-of-at-least-32-characters!!", 60);
        let token = first.access_token(Uuid::new_v4()).unwrap();
        assert!(first.verify_access(&token).is_some());
        let rotated = tokens("another-secret-of-at-least-32-chars!", 60);
        assert_eq!(rotated.verify_access(&token), None);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let tokens = tokens("a-secret-of-at-least-32-characters!!", 60);
        for _ in 0..VERIFIED_CAPACITY + 10 {
            let token = tokens.access_token(Uuid::new_v4()).unwrap();
            assert!(tokens.verify_access(&token).is_some());
        }
        let len = tokens.verified.read().unwrap().len();
        assert!((1..=VERIFIED_CAPACITY).contains(&len), "{len}");
    }
}
