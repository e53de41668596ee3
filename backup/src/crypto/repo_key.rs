//! The repository key: an age X25519 identity generated at `init`.

use std::io::{BufRead, Read, Write};

use age::secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::CryptoError;

/// The repository's key. Not `Clone` or `Debug`: it is the one secret that opens everything.
pub struct RepoKey {
    identity: age::x25519::Identity,
    recipient: age::x25519::Recipient,
    chunk_id_key: Zeroizing<[u8; 32]>,
}

impl RepoKey {
    /// A fresh random key, for a new repository.
    pub fn generate() -> Self {
        Self::from_identity(age::x25519::Identity::generate())
    }

    fn from_identity(identity: age::x25519::Identity) -> Self {
        let secret = identity.to_string();
        // Chunk ids are keyed with a secret derived from the repository key, so an id in an
        // index never reveals the plain hash of the data it names.
        let chunk_id_key = Zeroizing::new(blake3::derive_key(
            "lifeboat 2026-11 chunk id key v1",
            secret.expose_secret().as_bytes(),
        ));
        let recipient = identity.to_public();
        Self {
            identity,
            recipient,
            chunk_id_key,
        }
    }

    /// Parses the key from the text of an age identity file (comments allowed), as stored
    /// inside `keys/<id>` objects.
    pub fn from_identity_file_text(text: &str, object: &str) -> Result<Self, CryptoError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .ok_or_else(|| CryptoError::Corrupt {
                object: object.to_string(),
                message: "holds no AGE-SECRET-KEY line".to_string(),
            })?;
        let identity: age::x25519::Identity = line.parse().map_err(|_| CryptoError::Corrupt {
            object: object.to_string(),
            message: "holds a malformed AGE-SECRET-KEY line".to_string(),
        })?;
        Ok(Self::from_identity(identity))
    }

    /// The identity-file text stored (encrypted) in `keys/<id>`: usable as-is with
    /// `age -d -i`.
    pub fn to_identity_file_text(&self, repo_id: &str) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# Lifeboat repository {repo_id}: repository key (decrypts every object with `age -d -i`)\n# public key: {}\n{}\n",
            self.recipient,
            self.identity.to_string().expose_secret()
        ))
    }

    /// The public half, recorded in the repository config.
    pub fn recipient(&self) -> String {
        self.recipient.to_string()
    }

    /// The key for chunk ids (keyed BLAKE3).
    pub fn chunk_id_key(&self) -> &[u8; 32] {
        &self.chunk_id_key
    }

    /// Encrypts `plaintext` into a complete age file.
    pub fn encrypt(&self, plaintext: &[u8], object: &str) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(plaintext.len() + plaintext.len() / 4096 + 256);
        let mut writer = self.encrypt_to(&mut out, object)?;
        writer.write_all(plaintext).map_err(|e| encrypt_err(object, e))?;
        writer.finish().map_err(|e| encrypt_err(object, e))?;
        Ok(out)
    }

    /// Starts an age stream into `out`; call `finish()` on the writer.
    pub fn encrypt_to<W: Write>(
        &self,
        out: W,
        object: &str,
    ) -> Result<age::stream::StreamWriter<W>, CryptoError> {
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&self.recipient as &dyn age::Recipient))
                .map_err(|e| encrypt_err(object, e))?;
        encryptor.wrap_output(out).map_err(|e| encrypt_err(object, e))
    }

    /// Decrypts a complete age file written by [`RepoKey::encrypt`].
    pub fn decrypt(&self, ciphertext: &[u8], object: &str) -> Result<Vec<u8>, CryptoError> {
        self.decrypt_parts(&[ciphertext], object)
    }

    /// Decrypts an age file that arrived in `parts` (as an HTTP body does), without copying
    /// the parts together first.
    pub fn decrypt_parts<P: AsRef<[u8]>>(&self, parts: &[P], object: &str) -> Result<Vec<u8>, CryptoError> {
        let total: usize = parts.iter().map(|p| p.as_ref().len()).sum();
        let mut reader = self.decrypt_reader(PartsReader::new(parts), object)?;
        // The plaintext is a little shorter than the ciphertext: one allocation.
        let mut out = Vec::with_capacity(total);
        reader.read_to_end(&mut out).map_err(|e| corrupt(object, e))?;
        Ok(out)
    }

    /// The plaintext of the age file `input`, as a reader: consumers that go through it in
    /// order (a restore walking a pack's frames) never hold the whole plaintext. Each 64 KiB
    /// chunk is authenticated before any of it is returned; after a read error nothing more
    /// of the file can be trusted.
    pub fn decrypt_reader<R: BufRead>(
        &self,
        input: R,
        object: &str,
    ) -> Result<age::stream::StreamReader<R>, CryptoError> {
        let decryptor = age::Decryptor::new_buffered(input).map_err(|e| corrupt(object, e))?;
        decryptor
            .decrypt(std::iter::once(&self.identity as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => CryptoError::NoMatchingKey {
                    object: object.to_string(),
                },
                other => corrupt(object, other),
            })
    }
}

/// Reads consecutive byte slices as one stream, without copying them together.
pub struct PartsReader<'a, P> {
    parts: &'a [P],
    /// Position in `parts[0]`.
    pos: usize,
}

impl<'a, P: AsRef<[u8]>> PartsReader<'a, P> {
    /// A reader over `parts`, in order.
    pub fn new(parts: &'a [P]) -> Self {
        Self { parts, pos: 0 }
    }
}

impl<P: AsRef<[u8]>> BufRead for PartsReader<'_, P> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while let Some((first, rest)) = self.parts.split_first() {
            if self.pos < first.as_ref().len() {
                return Ok(&first.as_ref()[self.pos..]);
            }
            self.parts = rest;
            self.pos = 0;
        }
        Ok(&[])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

impl<P: AsRef<[u8]>> Read for PartsReader<'_, P> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        crate::bufread::read_from_buf(self, buf)
    }
}

fn encrypt_err(object: &str, e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Encrypt {
        object: object.to_string(),
        message: e.to_string(),
    }
}

pub(crate) fn corrupt(object: &str, e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Corrupt {
        object: object.to_string(),
        message: e.to_string(),
    }
}

/// Keeps passphrases typed by users out of `Debug` output.
pub(crate) fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_survives_reload() {
        let key = RepoKey::generate();
        let ct = key.encrypt(b"hello", "x").unwrap();
        assert!(ct.starts_with(b"age-encryption.org/v1\n"));
        let text = key.to_identity_file_text("r1");
        let again = RepoKey::from_identity_file_text(&text, "keys/k").unwrap();
        assert_eq!(again.decrypt(&ct, "x").unwrap(), b"hello");
        assert_eq!(again.chunk_id_key(), key.chunk_id_key());
    }

    #[test]
    fn tampering_is_detected() {
        let key = RepoKey::generate();
        let mut ct = key.encrypt(&vec![1u8; 100_000], "x").unwrap();
        let n = ct.len() - 10;
        ct[n] ^= 1;
        assert!(matches!(key.decrypt(&ct, "x"), Err(CryptoError::Corrupt { .. })));
        let other = RepoKey::generate();
        let ct = key.encrypt(b"a", "x").unwrap();
        assert!(matches!(
            other.decrypt(&ct, "x"),
            Err(CryptoError::NoMatchingKey { .. })
        ));
    }

    #[test]
    fn decrypts_from_parts() {
        let key = RepoKey::generate();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        for plaintext in [&big[..], b"short", b""] {
            let ct = key.encrypt(plaintext, "x").unwrap();
            // Cut at odd places, one part empty, as HTTP bodies arrive.
            let cut = (ct.len() / 2).max(7);
            let parts = [&ct[..7], &ct[7..7], &ct[7..cut], &ct[cut..]];
            assert_eq!(key.decrypt_parts(&parts, "x").unwrap(), plaintext);
        }
    }
}
