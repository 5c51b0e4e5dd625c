//! Local-mode bootstrap tokens: proof that a proxy may act as a namespace's
//! service account, handed out by the controller (`--print-token ns/sa`) as
//! Kubernetes hands out projected ServiceAccount tokens.
//!
//! A token is `sluice-v1.<ns>.<sa>.<mac>` with an HMAC-SHA256 of `ns/sa`
//! under a secret kept (0600) in the state folder, so checking one needs no
//! lookup and a leaked token names exactly one identity.

use ring::hmac;
use std::path::Path;

const PREFIX: &str = "sluice-v1";

/// A token that does not prove an identity.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidToken {
    /// Not of the token's form.
    #[error("malformed bootstrap token")]
    Malformed,
    /// The MAC does not match: forged, or from another controller's state.
    #[error("bootstrap token signature does not match")]
    BadSignature,
}

/// Issues and checks bootstrap tokens.
pub struct BootstrapTokens {
    key: hmac::Key,
}

impl BootstrapTokens {
    /// Loads the secret from `state_dir/bootstrap-secret`, creating it first.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, super::CaError> {
        use ring::rand::SecureRandom;
        let path = state_dir.join("bootstrap-secret");
        let secret = if path.is_file() {
            super::read(&path)?
        } else {
            let mut bytes = [0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| super::CaError::Io {
                    path: path.clone(),
                    source: std::io::Error::other("no randomness for the bootstrap secret"),
                })?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            super::write_private(&path, &hex)?;
            hex
        };
        Ok(Self::from_secret(secret.trim().as_bytes()))
    }

    /// Tokens under a given secret (tests).
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The token of `namespace`/`service_account`.
    pub fn issue(&self, namespace: &str, service_account: &str) -> String {
        let tag = hmac::sign(
            &self.key,
            format!("{namespace}/{service_account}").as_bytes(),
        );
        let mac: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX}.{namespace}.{service_account}.{mac}")
    }

    /// The (namespace, service account) a token proves.
    pub fn verify(&self, token: &str) -> Result<(String, String), InvalidToken> {
        let mut parts = token.trim().split('.');
        let (Some(PREFIX), Some(ns), Some(sa), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(InvalidToken::Malformed);
        };
        let mac = decode_hex(mac).ok_or(InvalidToken::Malformed)?;
        hmac::verify(&self.key, format!("{ns}/{sa}").as_bytes(), &mac)
            .map_err(|_| InvalidToken::BadSignature)?;
        Ok((ns.to_owned(), sa.to_owned()))
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
