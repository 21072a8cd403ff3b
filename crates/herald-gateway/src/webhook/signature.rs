//! Standard Webhooks signatures (<https://www.standardwebhooks.com>), both ways: Herald verifies the
//! requests that reach `/v1/webhooks/{name}` and signs the callbacks it sends, so existing receiver
//! libraries verify Herald and Herald verifies their senders.
//!
//! A message is signed as `v1,<base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"))>`,
//! where the key is the base64 after `whsec_` in the secret. `webhook-signature` may carry several
//! space-separated signatures (a key being rotated); one that verifies is enough.
//!
//! **Invariant:** verification takes the same time wherever a signature differs (the MAC is compared by
//! `hmac`'s constant-time check), a timestamp more than [`TOLERANCE`] away from now is refused whatever
//! the signature (a captured request cannot be replayed later), and the secret never appears in any
//! `Debug` output or error.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from now, either way.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The prefix of a secret as Standard Webhooks writes it.
const SECRET_PREFIX: &str = "whsec_";

/// A webhook signing key. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why a secret cannot be used. The secret itself is never part of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("it does not start with `whsec_` (Standard Webhooks secrets are written `whsec_<base64>`)")]
    NoPrefix,
    #[error("the part after `whsec_` is not base64")]
    NotBase64,
    #[error("it is too short: at least 16 bytes (24 base64 characters) after `whsec_`")]
    TooShort,
}

impl Secret {
    /// A secret written `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::NoPrefix)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if key.len() < 16 {
            return Err(SecretError::TooShort);
        }
        Ok(Secret(key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value for a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag))
    }

    /// Checks a request's `webhook-id`, `webhook-timestamp` and `webhook-signature` headers against its
    /// body, at `now` (Unix seconds).
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        if id.is_empty() {
            return Err(VerifyError::MissingId);
        }
        let timestamp: i64 = timestamp.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
        if timestamp.abs_diff(now) > TOLERANCE.as_secs() {
            return Err(VerifyError::Stale);
        }
        let mut seen_v1 = false;
        for candidate in signatures.split_whitespace() {
            let Some(encoded) = candidate.strip_prefix("v1,") else {
                continue;
            };
            seen_v1 = true;
            let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
                continue;
            };
            if self.mac(id, timestamp, body).verify_slice(&tag).is_ok() {
                return Ok(());
            }
        }
        Err(if seen_v1 {
            VerifyError::Mismatch
        } else {
            VerifyError::NoSignature
        })
    }
}

/// Why a request's signature was refused (each a `401`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the webhook-id header is missing")]
    MissingId,
    #[error("the webhook-timestamp header is missing or not a number of seconds")]
    BadTimestamp,
    #[error("the webhook-timestamp is more than 5 minutes from now (a replayed or delayed request)")]
    Stale,
    #[error("the webhook-signature header has no v1 signature")]
    NoSignature,
    #[error("no signature in webhook-signature matches the body")]
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification and its reference libraries' tests.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_specifications_example_signs_and_verifies() {
        let secret = Secret::parse(SECRET).unwrap();
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY), SIGNATURE);
        assert_eq!(
            secret.verify(ID, "1614265330", SIGNATURE, BODY, TIMESTAMP + 10),
            Ok(())
        );
        // Several signatures (a key being rotated): one that matches is enough.
        let rotated = format!("v1,bm90IGl0 v2,whatever {SIGNATURE}");
        assert_eq!(secret.verify(ID, "1614265330", &rotated, BODY, TIMESTAMP), Ok(()));
    }

    #[test]
    fn a_changed_body_id_or_time_and_a_stale_request_are_refused() {
        let secret = Secret::parse(SECRET).unwrap();
        let verify =
            |id: &str, ts: &str, sig: &str, body: &[u8], now: i64| secret.verify(id, ts, sig, body, now);
        assert_eq!(
            verify(ID, "1614265330", SIGNATURE, b"{}", TIMESTAMP),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("msg_other", "1614265330", SIGNATURE, BODY, TIMESTAMP),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(ID, "1614265331", SIGNATURE, BODY, TIMESTAMP),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(ID, "1614265330", SIGNATURE, BODY, TIMESTAMP + 301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(ID, "1614265330", SIGNATURE, BODY, TIMESTAMP - 301),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(ID, "soon", SIGNATURE, BODY, TIMESTAMP),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            verify("", "1614265330", SIGNATURE, BODY, TIMESTAMP),
            Err(VerifyError::MissingId)
        );
        assert_eq!(
            verify(ID, "1614265330", "v2,abc", BODY, TIMESTAMP),
            Err(VerifyError::NoSignature)
        );
        assert_eq!(
            verify(ID, "1614265330", "v1,!!!", BODY, TIMESTAMP),
            Err(VerifyError::Mismatch)
        );
        let other = Secret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(
            other.verify(ID, "1614265330", SIGNATURE, BODY, TIMESTAMP),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn secrets_are_whsec_base64_and_never_shown() {
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
            SecretError::NoPrefix
        );
        assert_eq!(Secret::parse("whsec_***").unwrap_err(), SecretError::NotBase64);
        assert_eq!(Secret::parse("whsec_YWJj").unwrap_err(), SecretError::TooShort);
        assert_eq!(
            format!("{:?}", Secret::parse(SECRET).unwrap()),
            "Secret(<redacted>)"
        );
    }
}
