//! The control-stream cipher under arbitrary chunking on both ends: decrypting what was
//! encrypted gives the plaintext back, and no chunking changes the bytes on the wire.
#![no_main]

use bytes::BytesMut;
use harp::tunnel::crypto::{AesKey, Decryptor, Encryptor, IV_LEN};
use libfuzzer_sys::fuzz_target;

/// Splits `data` into pieces whose sizes cycle through `sizes` (each byte + 1, so 1..=256).
fn pieces<'a>(mut data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while !data.is_empty() {
        let n = usize::from(sizes.get(i % sizes.len().max(1)).copied().unwrap_or(255)) + 1;
        let (piece, rest) = data.split_at(n.min(data.len()));
        out.push(piece);
        data = rest;
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < IV_LEN + 9 {
        return;
    }
    let (iv, rest) = data.split_at(IV_LEN);
    let (token_len, rest) = rest.split_at(1);
    let (enc_sizes, rest) = rest.split_at(4);
    let (dec_sizes, plain) = rest.split_at(4);
    let token = "t".repeat(usize::from(token_len[0] % 8));
    let key = AesKey::from_token(&token);
    let iv: [u8; IV_LEN] = iv.try_into().unwrap();

    let mut whole = BytesMut::new();
    Encryptor::new(&key, iv).encrypt(plain, &mut whole);

    let mut enc = Encryptor::new(&key, iv);
    let mut wire = BytesMut::new();
    for piece in pieces(plain, enc_sizes) {
        enc.encrypt(piece, &mut wire);
    }
    assert_eq!(wire, whole, "chunking changed the ciphertext");

    let mut dec = Decryptor::new(&key);
    let mut back = BytesMut::new();
    for piece in pieces(&wire, dec_sizes) {
        dec.decrypt(piece, &mut back);
    }
    assert_eq!(&back[..], plain);
});
