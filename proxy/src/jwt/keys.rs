//! JSON Web Key Sets (RFC 7517) and JWS signature checks (RFC 7515, 7518,
//! 8037) with `ring`: RSA (PKCS#1 v1.5 and PSS), ECDSA P-256/P-384,
//! Ed25519 and HMAC keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// One usable key of a set.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    /// The key's own `alg`, when it names one.
    pub(crate) alg: Option<String>,
    material: Material,
}

#[derive(Clone)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed point (`0x04 || x || y`).
    EcP256(Vec<u8>),
    EcP384(Vec<u8>),
    Ed25519(Vec<u8>),
    Hmac(Vec<u8>),
}

impl std::fmt::Debug for Material {
    // Never prints key bytes (HMAC keys are secrets).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Material::Rsa { .. } => "RSA",
            Material::EcP256(_) => "EC P-256",
            Material::EcP384(_) => "EC P-384",
            Material::Ed25519(_) => "OKP Ed25519",
            Material::Hmac(_) => "oct",
        })
    }
}

/// The members of a JWK this module reads; others are ignored (RFC 7517 §4).
#[derive(Deserialize)]
struct RawKey {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

fn b64(field: &str, value: Option<&String>) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("missing \"{field}\""))?;
    // Padding is not part of base64url in JOSE, but some publishers add it.
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|e| format!("\"{field}\" is not base64url: {e}"))
}

/// Reads a key set. Only a document that is no key set at all is an error;
/// a key this proxy cannot use (malformed, or of a type or curve it cannot
/// verify with, such as EC P-521) is skipped and named in the second list,
/// so one odd key an identity provider publishes never costs the others.
pub(crate) fn parse_set(text: &str) -> Result<(Vec<Key>, Vec<String>), String> {
    let set: RawSet =
        serde_json::from_str(text).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    let mut skipped = Vec::new();
    for (i, raw) in set.keys.into_iter().enumerate() {
        let raw: RawKey = match serde_json::from_value(raw) {
            Ok(raw) => raw,
            Err(e) => {
                skipped.push(format!("keys[{i}]: not a JSON Web Key: {e}"));
                continue;
            }
        };
        // Encryption keys never verify signatures.
        if raw.use_.as_deref() == Some("enc") {
            continue;
        }
        match material(&raw) {
            Ok(Some(material)) => keys.push(Key {
                kid: raw.kid,
                alg: raw.alg,
                material,
            }),
            Ok(None) => skipped.push(format!("keys[{i}]: unsupported key type or curve")),
            Err(e) => skipped.push(format!("keys[{i}]: {e}")),
        }
    }
    Ok((keys, skipped))
}

fn material(raw: &RawKey) -> Result<Option<Material>, String> {
    match raw.kty.as_deref() {
        Some("RSA") => {
            let mut n = b64("n", raw.n.as_ref())?;
            // Some publishers keep the sign byte of the modulus; ring wants
            // the minimal big-endian form.
            let zeros = n.iter().take_while(|b| **b == 0).count();
            n.drain(..zeros);
            let e = b64("e", raw.e.as_ref())?;
            if n.is_empty() || e.is_empty() {
                return Err("empty RSA modulus or exponent".into());
            }
            Ok(Some(Material::Rsa { n, e }))
        }
        Some("EC") => {
            let (len, p384) = match raw.crv.as_deref() {
                Some("P-256") => (32, false),
                Some("P-384") => (48, true),
                Some("P-521") => return Ok(None),
                other => return Err(format!("unknown EC curve {other:?}")),
            };
            let x = b64("x", raw.x.as_ref())?;
            let y = b64("y", raw.y.as_ref())?;
            if x.len() != len || y.len() != len {
                return Err(format!("EC coordinates must be {len} bytes each"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(Some(if p384 {
                Material::EcP384(point)
            } else {
                Material::EcP256(point)
            }))
        }
        Some("OKP") => match raw.crv.as_deref() {
            Some("Ed25519") => {
                let x = b64("x", raw.x.as_ref())?;
                if x.len() != 32 {
                    return Err("Ed25519 key must be 32 bytes".into());
                }
                Ok(Some(Material::Ed25519(x)))
            }
            _ => Ok(None),
        },
        Some("oct") => {
            let k = b64("k", raw.k.as_ref())?;
            if k.is_empty() {
                return Err("empty symmetric key".into());
            }
            Ok(Some(Material::Hmac(k)))
        }
        Some(_) => Ok(None),
        None => Err("missing \"kty\"".into()),
    }
}

/// Algorithms a token may name (`none` never verifies).
pub(crate) fn supported(alg: &str) -> bool {
    matches!(
        alg,
        "RS256"
            | "RS384"
            | "RS512"
            | "PS256"
            | "PS384"
            | "PS512"
            | "ES256"
            | "ES384"
            | "EdDSA"
            | "HS256"
            | "HS384"
            | "HS512"
    )
}

impl Key {
    /// Whether this key can check a signature made with `alg` (its type
    /// fits, and its own `alg`, if any, is the same).
    pub(crate) fn fits(&self, alg: &str) -> bool {
        if self.alg.as_deref().is_some_and(|a| a != alg) {
            return false;
        }
        match &self.material {
            Material::Rsa { .. } => alg.starts_with("RS") || alg.starts_with("PS"),
            Material::EcP256(_) => alg == "ES256",
            Material::EcP384(_) => alg == "ES384",
            Material::Ed25519(_) => alg == "EdDSA",
            Material::Hmac(_) => alg.starts_with("HS"),
        }
    }

    /// Checks `sig` over `signed` (the token's `header.payload`).
    pub(crate) fn verify(&self, alg: &str, signed: &[u8], sig: &[u8]) -> bool {
        let rsa = |params: &'static signature::RsaParameters| match &self.material {
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(params, signed, sig)
                .is_ok(),
            _ => false,
        };
        let hmac = |a: ring::hmac::Algorithm| match &self.material {
            Material::Hmac(k) => {
                ring::hmac::verify(&ring::hmac::Key::new(a, k), signed, sig).is_ok()
            }
            _ => false,
        };
        match alg {
            "RS256" => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
            "RS384" => rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
            "RS512" => rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
            "PS256" => rsa(&signature::RSA_PSS_2048_8192_SHA256),
            "PS384" => rsa(&signature::RSA_PSS_2048_8192_SHA384),
            "PS512" => rsa(&signature::RSA_PSS_2048_8192_SHA512),
            "ES256" => match &self.material {
                Material::EcP256(p) => {
                    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, p)
                        .verify(signed, sig)
                        .is_ok()
                }
                _ => false,
            },
            "ES384" => match &self.material {
                Material::EcP384(p) => {
                    UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, p)
                        .verify(signed, sig)
                        .is_ok()
                }
                _ => false,
            },
            "EdDSA" => match &self.material {
                Material::Ed25519(p) => UnparsedPublicKey::new(&signature::ED25519, p)
                    .verify(signed, sig)
                    .is_ok(),
                _ => false,
            },
            "HS256" => hmac(ring::hmac::HMAC_SHA256),
            "HS384" => hmac(ring::hmac::HMAC_SHA384),
            "HS512" => hmac(ring::hmac::HMAC_SHA512),
            _ => false,
        }
    }
}
