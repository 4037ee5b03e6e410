//! Published test vectors for every algorithm, through the public API:
//! NIST CAVP SHAVS (SHA-256 short and long messages), the BLAKE3 team's
//! official vectors, the GB/T 32905-2016 SM3 examples and RFC 1321 MD5.
//! The vector files live in tests/data/vectors at the repository root.

use std::path::PathBuf;

use custodes_core::hashing::{hash_bytes, hash_file, Algorithm, Progress};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/vectors")
}

/// `(message, digest)` pairs of a CAVP `.rsp` file.
fn cavp(name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let text = std::fs::read_to_string(vectors_dir().join(name)).unwrap();
    let mut out = Vec::new();
    let mut len_bits: Option<usize> = None;
    let mut msg: Option<Vec<u8>> = None;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Len = ") {
            len_bits = Some(v.parse().unwrap());
        } else if let Some(v) = line.strip_prefix("Msg = ") {
            // For Len = 0 the file says "Msg = 00"; the message is empty.
            let bytes = hex::decode(v).unwrap();
            msg = Some(bytes[..len_bits.unwrap() / 8].to_vec());
        } else if let Some(v) = line.strip_prefix("MD = ") {
            out.push((msg.take().unwrap(), hex::decode(v).unwrap()));
        }
    }
    out
}

fn check_cavp(name: &str, expected_count: usize) {
    let vectors = cavp(name);
    assert_eq!(vectors.len(), expected_count, "{name}: vector count");
    for (i, (msg, md)) in vectors.iter().enumerate() {
        assert_eq!(&hash_bytes(&[Algorithm::Sha256], msg)[0], md, "{name} vector {i} ({} bytes)", msg.len());
    }
}

#[test]
fn nist_sha256_short_messages() {
    check_cavp("SHA256ShortMsg.rsp", 65);
}

#[test]
fn nist_sha256_long_messages() {
    check_cavp("SHA256LongMsg.rsp", 64);
}

#[test]
fn blake3_official_vectors() {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_dir().join("blake3_test_vectors.json")).unwrap())
            .unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 35);
    for case in cases {
        let len = case["input_len"].as_u64().unwrap() as usize;
        let input: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        // The vector is a 131-byte extended output; the default digest is its first 32 bytes.
        let expected = &case["hash"].as_str().unwrap()[..64];
        assert_eq!(hex::encode(&hash_bytes(&[Algorithm::Blake3], &input)[0]), expected, "input_len {len}");
    }
}

#[test]
fn sm3_gbt32905_examples() {
    // GB/T 32905-2016, Appendix A: example 1 ("abc") and example 2 ("abcd" x 16).
    assert_eq!(
        hex::encode(&hash_bytes(&[Algorithm::Sm3], b"abc")[0]),
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    );
    assert_eq!(
        hex::encode(&hash_bytes(&[Algorithm::Sm3], "abcd".repeat(16).as_bytes())[0]),
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    );
}

#[test]
fn md5_rfc1321_examples() {
    for (msg, md) in [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        (
            "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a",
        ),
    ] {
        assert_eq!(hex::encode(&hash_bytes(&[Algorithm::Md5], msg.as_bytes())[0]), md);
    }
}

#[test]
fn every_algorithm_in_one_pass_equals_each_alone() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m");
    let msg: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&p, &msg).unwrap();
    let all = hash_file(&p, &Algorithm::ALL, 1 << 20, &Progress::default()).unwrap();
    for (k, a) in Algorithm::ALL.iter().enumerate() {
        assert_eq!(all.digests[k], hash_bytes(&[*a], &msg)[0], "{}", a.name());
    }
}
