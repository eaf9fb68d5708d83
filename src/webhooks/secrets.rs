//! Signing secrets: generated here (the OS CSPRNG), shown to the client once
//! as `whsec_<base64 of 32 bytes>`, and kept in the database only sealed
//! with AES-256-GCM under `WEBHOOK_SECRETS_KEY`, which the server holds and
//! the database never sees. The associated data binds a sealed secret to its
//! organization and webhook: copied onto another row, it does not open.
//!
//! Sealed form: a 12-byte random nonce, then the ciphertext and its 16-byte tag.

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::Engine as _;
use uuid::Uuid;

const PREFIX: &str = "whsec_";
const NONCE_LEN: usize = 12;

/// A webhook's signing secret: the raw bytes the HMAC is keyed with.
#[derive(Clone)]
pub struct Secret(pub [u8; 32]);

impl Secret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Secret(bytes)
    }

    /// As the client sees it once: `whsec_` + base64.
    pub fn reveal(&self) -> String {
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The sealing keys: the current one, and the one being rotated out.
pub struct Sealer {
    current: Aes256Gcm,
    previous: Option<Aes256Gcm>,
}

#[derive(Debug)]
pub struct OpenError;

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the webhook's secret does not open with WEBHOOK_SECRETS_KEY \
             (nor WEBHOOK_SECRETS_PREVIOUS_KEY): was the key changed?",
        )
    }
}

impl std::error::Error for OpenError {}

fn associated_data(org: Uuid, webhook: Uuid) -> Vec<u8> {
    let mut aad = b"minicrm webhook secret v1:".to_vec();
    aad.extend_from_slice(org.as_bytes());
    aad.extend_from_slice(webhook.as_bytes());
    aad
}

impl Sealer {
    pub fn new(key: &[u8; 32], previous: Option<&[u8; 32]>) -> Self {
        Self {
            current: Aes256Gcm::new(key.into()),
            previous: previous.map(|k| Aes256Gcm::new(k.into())),
        }
    }

    pub fn seal(&self, org: Uuid, webhook: Uuid, secret: &Secret) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(org, webhook);
        let ciphertext = self
            .current
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &secret.0,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encrypts 32 bytes");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens a sealed secret of this webhook, with the current key or else
    /// the previous one.
    pub fn open(&self, org: Uuid, webhook: Uuid, sealed: &[u8]) -> Result<Secret, OpenError> {
        if sealed.len() <= NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError)?;
        let aad = associated_data(org, webhook);
        let payload = || Payload {
            msg: ciphertext,
            aad: &aad,
        };
        let nonce = &Nonce::from(nonce);
        let plain = self
            .current
            .decrypt(nonce, payload())
            .or_else(|e| match &self.previous {
                Some(previous) => previous.decrypt(nonce, payload()),
                None => Err(e),
            })
            .map_err(|_| OpenError)?;
        let bytes: [u8; 32] = plain.try_into().map_err(|_| OpenError)?;
        Ok(Secret(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_for_its_webhook_only() {
        let sealer = Sealer::new(&[1; 32], None);
        let (org, id) = (Uuid::new_v4(), Uuid::new_v4());
        let secret = Secret::generate();
        let sealed = sealer.seal(org, id, &secret);
        assert_eq!(sealer.open(org, id, &sealed).unwrap().0, secret.0);
        assert!(sealer.open(org, Uuid::new_v4(), &sealed).is_err());
        assert!(sealer.open(Uuid::new_v4(), id, &sealed).is_err());
        assert!(Sealer::new(&[2; 32], None).open(org, id, &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(sealer.open(org, id, &tampered).is_err());
        // Two seals of one secret differ (a fresh nonce each time).
        assert_ne!(sealer.seal(org, id, &secret), sealed);
    }

    #[test]
    fn the_previous_key_still_opens_during_a_rotation() {
        let (org, id) = (Uuid::new_v4(), Uuid::new_v4());
        let secret = Secret::generate();
        let sealed = Sealer::new(&[1; 32], None).seal(org, id, &secret);
        let rotated = Sealer::new(&[2; 32], Some(&[1; 32]));
        assert_eq!(rotated.open(org, id, &sealed).unwrap().0, secret.0);
    }

    #[test]
    fn revealed_secrets_are_whsec_and_32_bytes() {
        let shown = Secret::generate().reveal();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shown.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 32);
        assert_ne!(Secret::generate().0, Secret::generate().0);
    }
}
