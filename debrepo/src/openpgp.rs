//! OpenPGP: loading keyrings and verifying cleartext-signed InRelease files.
//!
//! rPGP checks the cryptography; the validity of the signing key is checked here:
//! the key (and, for a subkey, its binding and back signature) must carry a valid
//! self-signature made before the data signature, must not be revoked, must not be
//! expired at the time of the data signature, and must be allowed to sign. The data
//! signature must not be from the future nor expired.

use std::io::BufReader;

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::packet::{Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, Tag};

use crate::sources::Keyring;
use crate::Error;

const BEGIN_SIGNED: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const END_SIGNATURE: &str = "-----END PGP SIGNATURE-----";

/// A set of OpenPGP public keys trusted to sign Release files.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<SignedPublicKey>,
}

impl KeySet {
    /// Number of keys (primary keys) in the set.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Loads every public key of `keyrings`. Keys rPGP cannot parse are skipped with a
/// warning (keyrings such as Debian's carry many keys); an unreadable file is an error.
pub fn load_keys(keyrings: &[Keyring]) -> Result<KeySet, Error> {
    let mut keys = Vec::new();
    for k in keyrings {
        let (name, bytes) = match k {
            Keyring::File(p) => (
                p.display().to_string(),
                std::fs::read(p).map_err(|source| Error::Read {
                    path: p.clone(),
                    source,
                })?,
            ),
            Keyring::Armored(text) => ("inline key".to_string(), text.as_bytes().to_vec()),
        };
        let keyring_err = |e: pgp::errors::Error| Error::Keyring {
            name: name.clone(),
            message: e.to_string(),
        };
        let trimmed = bytes.trim_ascii_start();
        let iter: Box<dyn Iterator<Item = pgp::errors::Result<SignedPublicKey>>> =
            if trimmed.starts_with(b"-----BEGIN") {
                SignedPublicKey::from_armor_many(trimmed)
                    .map_err(keyring_err)?
                    .0
            } else {
                SignedPublicKey::from_bytes_many(BufReader::new(trimmed)).map_err(keyring_err)?
            };
        for key in iter {
            match key {
                Ok(key) => keys.push(key),
                Err(e) => log::warn!("keyring {name}: skipping a key: {e}"),
            }
        }
    }
    Ok(KeySet { keys })
}

/// Verifies a cleartext-signed message at time `now` (seconds since the epoch) and
/// returns the signed text with `\n` line ends. At least one signature must be valid
/// and made by a valid signing key in `keys`; the error explains why none is.
pub fn verify_cleartext(text: &str, keys: &KeySet, now: u32) -> Result<String, String> {
    let start = text.trim_start();
    if !start.starts_with(BEGIN_SIGNED) {
        return Err("not signed (no OpenPGP cleartext signature)".to_string());
    }
    if start.matches(BEGIN_SIGNED).count() != 1 {
        return Err("more than one signed message".to_string());
    }
    match start.find(END_SIGNATURE) {
        Some(end) if start[end + END_SIGNATURE.len()..].trim().is_empty() => {}
        Some(_) => return Err("data after the signature".to_string()),
        None => return Err("signature block is not terminated".to_string()),
    }
    let (msg, _) = CleartextSignedMessage::from_string(start)
        .map_err(|e| format!("malformed signed message: {e}"))?;
    let signed = msg.signed_text();
    let mut reasons = Vec::new();
    if msg.signatures().is_empty() {
        return Err("no signatures".to_string());
    }
    for sig in msg.signatures() {
        match check_signature(sig, signed.as_bytes(), &keys.keys, now) {
            Ok(()) => return Ok(signed.replace("\r\n", "\n")),
            Err(r) => reasons.push(r),
        }
    }
    Err(format!("no valid signature: {}", reasons.join("; ")))
}

fn issuer_name(sig: &Signature) -> String {
    if let Some(fp) = sig.issuer_fingerprint().first() {
        return format!("{fp:X}");
    }
    match sig.issuer_key_id().first() {
        Some(id) => hex::encode_upper(id.as_ref()),
        None => "unknown issuer".to_string(),
    }
}

fn check_signature(
    sig: &Signature,
    data: &[u8],
    keys: &[SignedPublicKey],
    now: u32,
) -> Result<(), String> {
    let issuer = issuer_name(sig);
    if !matches!(sig.typ(), Some(SignatureType::Text | SignatureType::Binary)) {
        return Err(format!("signature by {issuer} has type {:?}", sig.typ()));
    }
    let created = sig
        .created()
        .ok_or_else(|| format!("signature by {issuer} has no creation time"))?
        .as_secs();
    if created > now {
        return Err(format!("signature by {issuer} is from the future"));
    }
    if let Some(exp) = sig.signature_expiration_time().map(|d| d.as_secs()) {
        if exp != 0 && u64::from(created) + u64::from(exp) <= u64::from(now) {
            return Err(format!("signature by {issuer} has expired"));
        }
    }
    let mut tried = false;
    let mut problems = Vec::new();
    for key in keys {
        if key_matches(sig, &key.primary_key) {
            tried = true;
            match sig.verify(&key.primary_key, data) {
                Ok(()) => match primary_can_sign(key, created) {
                    Ok(()) => return Ok(()),
                    Err(e) => problems.push(e),
                },
                Err(e) => problems.push(format!("bad signature by {issuer}: {e}")),
            }
        }
        for sub in &key.public_subkeys {
            if key_matches(sig, &sub.key) {
                tried = true;
                match sig.verify(&sub.key, data) {
                    Ok(()) => match subkey_can_sign(key, sub, created) {
                        Ok(()) => return Ok(()),
                        Err(e) => problems.push(e),
                    },
                    Err(e) => problems.push(format!("bad signature by {issuer}: {e}")),
                }
            }
        }
    }
    if !tried {
        return Err(format!("signature by {issuer}: key not in the keyring"));
    }
    Err(problems.join("; "))
}

fn key_matches(sig: &Signature, key: &impl KeyDetails) -> bool {
    let fp = key.fingerprint();
    let id = key.legacy_key_id();
    sig.issuer_fingerprint().iter().any(|f| **f == fp)
        || sig.issuer_key_id().iter().any(|k| **k == id)
}

fn has_key_flags(sig: &Signature) -> bool {
    sig.config().is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    })
}

fn expired(created_at: u32, sig: &Signature, at: u32) -> bool {
    match sig.key_expiration_time().map(|d| d.as_secs()) {
        Some(exp) if exp != 0 => u64::from(created_at) + u64::from(exp) <= u64::from(at),
        _ => false,
    }
}

fn latest<'a>(sigs: impl Iterator<Item = &'a Signature>) -> Option<&'a Signature> {
    sigs.max_by_key(|s| s.created().map(|c| c.as_secs()).unwrap_or(0))
}

fn created_by(sig: &Signature, at: u32) -> bool {
    sig.created().is_some_and(|c| c.as_secs() <= at)
}

/// Checks that the primary key was valid at time `at`; returns its newest
/// self-signature (which carries the key's flags and expiry).
fn primary_valid(key: &SignedPublicKey, at: u32) -> Result<&Signature, String> {
    let pk = &key.primary_key;
    let fp = format!("{:X}", pk.fingerprint());
    if pk.created_at().as_secs() > at {
        return Err(format!("key {fp} was created after the signature"));
    }
    if key
        .details
        .revocation_signatures
        .iter()
        .any(|s| s.typ() == Some(SignatureType::KeyRevocation) && s.verify_key(pk).is_ok())
    {
        return Err(format!("key {fp} is revoked"));
    }
    let user_sigs = key.details.users.iter().flat_map(|u| {
        u.signatures
            .iter()
            .filter(|s| s.is_certification() && s.typ() != Some(SignatureType::CertRevocation))
            .filter(move |s| s.verify_certification(pk, Tag::UserId, &u.id).is_ok())
    });
    let direct = key
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::Key) && s.verify_key(pk).is_ok());
    let selfsig = latest(user_sigs.chain(direct).filter(|s| created_by(s, at)))
        .ok_or_else(|| format!("key {fp} has no valid self-signature"))?;
    if expired(pk.created_at().as_secs(), selfsig, at) {
        return Err(format!("key {fp} had expired when the signature was made"));
    }
    Ok(selfsig)
}

fn primary_can_sign(key: &SignedPublicKey, at: u32) -> Result<(), String> {
    let selfsig = primary_valid(key, at)?;
    if has_key_flags(selfsig) && !selfsig.key_flags().sign() {
        return Err(format!(
            "key {:X} is not a signing key",
            key.primary_key.fingerprint()
        ));
    }
    Ok(())
}

fn subkey_can_sign(
    key: &SignedPublicKey,
    sub: &pgp::composed::SignedPublicSubKey,
    at: u32,
) -> Result<(), String> {
    primary_valid(key, at)?;
    let pk = &key.primary_key;
    let fp = format!("{:X}", sub.key.fingerprint());
    if sub.key.created_at().as_secs() > at {
        return Err(format!("subkey {fp} was created after the signature"));
    }
    if sub.signatures.iter().any(|s| {
        s.typ() == Some(SignatureType::SubkeyRevocation)
            && s.verify_subkey_binding(pk, &sub.key).is_ok()
    }) {
        return Err(format!("subkey {fp} is revoked"));
    }
    let binding = latest(sub.signatures.iter().filter(|s| {
        s.typ() == Some(SignatureType::SubkeyBinding)
            && created_by(s, at)
            && s.verify_subkey_binding(pk, &sub.key).is_ok()
    }))
    .ok_or_else(|| format!("subkey {fp} has no valid binding signature"))?;
    if !binding.key_flags().sign() {
        return Err(format!("subkey {fp} is not a signing key"));
    }
    let backsig_ok = binding
        .embedded_signature()
        .is_some_and(|b| b.verify_primary_key_binding(&sub.key, pk).is_ok());
    if !backsig_ok {
        return Err(format!("subkey {fp} has no valid back signature"));
    }
    if expired(sub.key.created_at().as_secs(), binding, at) {
        return Err(format!(
            "subkey {fp} had expired when the signature was made"
        ));
    }
    Ok(())
}
