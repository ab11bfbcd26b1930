//! Key material, parsed once: the verifying half every key has, the signing half only
//! the keys Portcullis itself signs with. Verification never decodes a key on the hot
//! path (the HMAC is pre-keyed, curve points are decompressed, RSA numbers are parsed
//! when the key set is built).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer as _, Verifier as _};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

/// Checks signatures of one algorithm. Knowing only the public half (for the
/// asymmetric algorithms) is what lets other issuers' keys join a key set later.
#[derive(Clone)]
pub enum Verifier {
    /// HS256 keeps the HMAC state already keyed, so each verification clones
    /// 200 bytes instead of re-hashing the secret.
    Hs256(Hmac<Sha256>),
    EdDsa(ed25519_dalek::VerifyingKey),
    /// `any_s` is false for our own keys, whose signer emits low-S only, so the
    /// high-S twin of a good signature is refused; other issuers' ECDSA signers
    /// emit either half, so their keys accept both.
    Es256 {
        key: p256::ecdsa::VerifyingKey,
        any_s: bool,
    },
    Rs256(rsa::pkcs1v15::VerifyingKey<Sha256>),
}

/// Smallest RSA modulus accepted from another issuer's key set.
const MIN_RSA_BITS: usize = 2048;

/// Makes signatures; only the keys this gateway issues tokens with have one.
#[derive(Clone)]
pub enum Signer {
    Hs256(Hmac<Sha256>),
    EdDsa(ed25519_dalek::SigningKey),
    Es256(p256::ecdsa::SigningKey),
    Rs256(rsa::pkcs1v15::SigningKey<Sha256>),
}

impl Verifier {
    /// The JOSE `alg` this key verifies, and the only one it accepts.
    pub fn alg(&self) -> &'static str {
        match self {
            Verifier::Hs256(_) => "HS256",
            Verifier::EdDsa(_) => "EdDSA",
            Verifier::Es256 { .. } => "ES256",
            Verifier::Rs256(_) => "RS256",
        }
    }

    /// Checks `signature` over `message`. HS256 compares in constant time
    /// (`verify_slice` uses `subtle`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::Hs256(mac) => {
                let mut mac = mac.clone();
                mac.update(message);
                mac.verify_slice(signature).is_ok()
            }
            // Strict: no small-order or non-canonical points, so one token has one spelling.
            Verifier::EdDsa(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok()),
            Verifier::Es256 { key, any_s } => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| {
                    let sig = match sig.normalize_s() {
                        Some(_) if !any_s => return false,
                        Some(low) => low,
                        None => sig,
                    };
                    key.verify(message, &sig).is_ok()
                }),
            Verifier::Rs256(key) => rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|sig| key.verify(message, &sig).is_ok()),
        }
    }

    /// The public JWK members (RFC 7517/7518/8037) in lexicographic order, which is
    /// also the order RFC 7638 thumbprints need. `None` for a shared secret.
    pub fn public_jwk(&self) -> Option<Vec<(&'static str, String)>> {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        Some(match self {
            Verifier::Hs256(_) => return None,
            Verifier::EdDsa(key) => vec![
                ("crv", "Ed25519".to_owned()),
                ("kty", "OKP".to_owned()),
                ("x", b64(key.as_bytes())),
            ],
            Verifier::Es256 { key, .. } => {
                let point = key.to_encoded_point(false);
                vec![
                    ("crv", "P-256".to_owned()),
                    ("kty", "EC".to_owned()),
                    ("x", b64(point.x()?)),
                    ("y", b64(point.y()?)),
                ]
            }
            Verifier::Rs256(key) => {
                let public: &rsa::RsaPublicKey = key.as_ref();
                vec![
                    ("e", b64(&public.e().to_bytes_be())),
                    ("kty", "RSA".to_owned()),
                    ("n", b64(&public.n().to_bytes_be())),
                ]
            }
        })
    }

    /// The verifier for another issuer's public JWK (RFC 7517/7518/8037): an
    /// Ed25519 `OKP`, a P-256 `EC` or an `RSA` key of at least 2048 bits. Shared
    /// secrets (`oct`) and private members are refused: a key set fetched over
    /// the network only ever tells us how to check signatures.
    pub fn from_public_jwk(
        jwk: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Verifier, String> {
        let text = |name: &str| {
            jwk.get(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("no \"{name}\""))
        };
        let bytes = |name: &str| {
            URL_SAFE_NO_PAD
                .decode(text(name)?)
                .map_err(|_| format!("\"{name}\" is not base64url"))
        };
        if jwk.contains_key("d") {
            return Err("holds a private key".into());
        }
        match (text("kty")?, jwk.get("crv").and_then(|v| v.as_str())) {
            ("OKP", Some("Ed25519")) => {
                let x: [u8; 32] = bytes("x")?
                    .try_into()
                    .map_err(|_| "\"x\" is not 32 bytes")?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map(Verifier::EdDsa)
                    .map_err(|_| "not an Ed25519 point".into())
            }
            ("EC", Some("P-256")) => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("\"x\" and \"y\" must be 32 bytes each".into());
                }
                let point = p256::EncodedPoint::from_affine_coordinates(
                    x.as_slice().into(),
                    y.as_slice().into(),
                    false,
                );
                p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                    .map(|key| Verifier::Es256 { key, any_s: true })
                    .map_err(|_| "not a P-256 point".into())
            }
            ("RSA", _) => {
                let n = rsa::BigUint::from_bytes_be(&bytes("n")?);
                let e = rsa::BigUint::from_bytes_be(&bytes("e")?);
                let key = rsa::RsaPublicKey::new(n, e).map_err(|e| format!("bad RSA key: {e}"))?;
                if key.n().bits() < MIN_RSA_BITS {
                    return Err(format!("RSA modulus under {MIN_RSA_BITS} bits"));
                }
                Ok(Verifier::Rs256(rsa::pkcs1v15::VerifyingKey::new(key)))
            }
            (kty, crv) => Err(format!(
                "unsupported key type {kty}{}",
                crv.map(|c| format!(" ({c})")).unwrap_or_default()
            )),
        }
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` of generated keys,
    /// so anyone holding the public key can check which key a `kid` names.
    pub fn thumbprint(&self) -> Option<String> {
        let members = self.public_jwk()?;
        let mut canonical = String::from("{");
        for (i, (name, value)) in members.iter().enumerate() {
            if i > 0 {
                canonical.push(',');
            }
            // Names and base64url values never need JSON escaping.
            canonical.push_str(&format!("\"{name}\":\"{value}\""));
        }
        canonical.push('}');
        Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
    }
}

impl Signer {
    /// HS256 from a shared secret; HMAC takes keys of any length.
    pub fn hs256(secret: &[u8]) -> Signer {
        match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(mac) => Signer::Hs256(mac),
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }

    /// The verifying half of this key.
    pub fn verifier(&self) -> Verifier {
        match self {
            Signer::Hs256(mac) => Verifier::Hs256(mac.clone()),
            Signer::EdDsa(key) => Verifier::EdDsa(key.verifying_key()),
            Signer::Es256(key) => Verifier::Es256 {
                key: *key.verifying_key(),
                any_s: false,
            },
            Signer::Rs256(key) => Verifier::Rs256(rsa::pkcs1v15::VerifyingKey::new(
                AsRef::<rsa::RsaPrivateKey>::as_ref(key).to_public_key(),
            )),
        }
    }

    /// Signs `message` (the JWS signing input).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Signer::Hs256(mac) => {
                let mut mac = mac.clone();
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            Signer::EdDsa(key) => key.sign(message).to_bytes().to_vec(),
            Signer::Es256(key) => {
                let sig: p256::ecdsa::Signature = key.sign(message);
                sig.normalize_s().unwrap_or(sig).to_vec()
            }
            // Randomized: RSA blinding hides the private exponent's timing.
            Signer::Rs256(key) => key.sign_with_rng(&mut rand_core::OsRng, message).to_vec(),
        }
    }
}
