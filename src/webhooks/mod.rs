//! Webhooks (SPEC §13; README "Webhooks"): the signing secrets and their
//! sealing at rest ([`secrets`]), the SSRF rules ([`ssrf`]) and the
//! Standard Webhooks signature ([`sign`]). The delivery worker is
//! `workers::webhooks`; the routes are `http::routes::webhooks`.

pub mod secrets;
pub mod ssrf;

use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{http::problem::Problem, ops::config::WebhookSettings};

/// What the webhook routes and the delivery worker share; the server has it
/// only when `WEBHOOK_SECRETS_KEY` is set.
pub struct Webhooks {
    pub sealer: secrets::Sealer,
    /// Names are resolved through this (tests steer it).
    pub resolver: Arc<dyn ssrf::Resolve>,
    pub settings: WebhookSettings,
}

impl Webhooks {
    /// None without `WEBHOOK_SECRETS_KEY`: webhooks are off.
    pub fn new(settings: &WebhookSettings) -> Option<Self> {
        let key = settings.secrets_key.as_ref()?;
        Some(Self {
            sealer: secrets::Sealer::new(key, settings.previous_secrets_key.as_ref()),
            resolver: Arc::new(ssrf::SystemResolver),
            settings: settings.clone(),
        })
    }

    /// The SSRF check of an endpoint URL (400 `webhook_url_forbidden`).
    pub async fn check_url(&self, url: &str) -> Result<(), Problem> {
        ssrf::check_url(
            url,
            self.settings.allow_private_networks,
            self.resolver.as_ref(),
        )
        .await
    }
}

/// `webhook-signature` of Standard Webhooks: `v1,` and the base64 of
/// HMAC-SHA256 over `<id>.<timestamp>.<body>`, keyed with the secret's
/// decoded bytes (the 32 bytes after `whsec_`).
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification: secret
    /// `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, id `msg_p5jXN8AQM9LWM0D4loKWxJek`,
    /// timestamp 1614265330, body `{"test": 2432232314}`.
    #[test]
    fn signs_the_standard_webhooks_example() {
        let secret = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        assert_eq!(
            sign(
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
