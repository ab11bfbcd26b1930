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
    Es256(p256::ecdsa::VerifyingKey),
    Rs256(rsa::pkcs1v15::VerifyingKey<Sha256>),
}

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
            Verifier::Es256(_) => "ES256",
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
            // Our signer emits low-S only; a high-S twin of a good signature is refused.
            Verifier::Es256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| sig.normalize_s().is_none() && key.verify(message, &sig).is_ok()),
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
            Verifier::Es256(key) => {
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
            Signer::Es256(key) => Verifier::Es256(*key.verifying_key()),
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
