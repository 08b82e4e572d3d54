//! ed25519 signatures over plugin uploads. A signature covers the jurisdiction, the kind,
//! the version and the SHA-256 of the component bytes, so none of them can be changed
//! after signing, and a key trusted for one jurisdiction cannot vouch for another's
//! plugin.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

const SIGNATURE_CONTEXT: &str = "domicile-plugin-v1";

/// What exactly is signed.
pub fn signed_message(jurisdiction: &str, kind: &str, version: u64, sha256_hex: &str) -> Vec<u8> {
    format!("{SIGNATURE_CONTEXT}\n{jurisdiction}\n{kind}\n{version}\n{sha256_hex}\n").into_bytes()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A new key pair as (secret key hex, public key hex).
pub fn generate_key_pair() -> (String, String) {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    (
        hex::encode(seed),
        hex::encode(key.verifying_key().to_bytes()),
    )
}

pub fn parse_signing_key(secret_hex: &str) -> Result<SigningKey, String> {
    let bytes: [u8; 32] = hex::decode(secret_hex.trim())
        .map_err(|_| "secret key is not hex".to_string())?
        .try_into()
        .map_err(|_| "secret key must be 32 bytes".to_string())?;
    Ok(SigningKey::from_bytes(&bytes))
}

pub fn parse_public_key(public_hex: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(public_hex.trim())
        .map_err(|_| "public key is not hex".to_string())?
        .try_into()
        .map_err(|_| "public key must be 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("invalid public key: {e}"))
}

/// A short, stable name for a public key (first 16 hex digits of its SHA-256).
pub fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(&key.to_bytes())[..16].to_string()
}

pub fn sign(key: &SigningKey, message: &[u8]) -> String {
    hex::encode(key.sign(message).to_bytes())
}

pub fn verify(key: &VerifyingKey, message: &[u8], signature_hex: &str) -> bool {
    let Ok(bytes) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    key.verify(message, &Signature::from_bytes(&bytes)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_binds_every_field() {
        let (secret, public) = generate_key_pair();
        let key = parse_signing_key(&secret).expect("secret");
        let public = parse_public_key(&public).expect("public");
        let message = signed_message("EU", "residency-policy", 3, &sha256_hex(b"wasm"));
        let signature = sign(&key, &message);
        assert!(verify(&public, &message, &signature));
        for other in [
            signed_message("US", "residency-policy", 3, &sha256_hex(b"wasm")),
            signed_message("EU", "cdc-redactor", 3, &sha256_hex(b"wasm")),
            signed_message("EU", "residency-policy", 4, &sha256_hex(b"wasm")),
            signed_message("EU", "residency-policy", 3, &sha256_hex(b"wasm!")),
        ] {
            assert!(!verify(&public, &other, &signature));
        }
        assert!(!verify(&public, &message, "not hex"));
        assert!(!verify(&public, &message, &"00".repeat(64)));
    }
}
