//! Arbitrary bytes as the front of a yamux stream: a header either decodes and re-encodes to
//! the same 12 bytes, or is refused for exactly the reasons yamux refuses it.
#![no_main]

use harp::tunnel::yamux_header::{Header, HeaderError, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Header::peek(data) {
        Ok(None) => assert!(data.len() < HEADER_LEN),
        Ok(Some(header)) => {
            assert_eq!(&header.encode()[..], &data[..HEADER_LEN]);
            if header.frame_type != harp::tunnel::yamux_header::FrameType::Data {
                assert_eq!(header.payload_len(), 0);
            }
        }
        Err(HeaderError::UnsupportedVersion(v)) => assert!(v != 0 && v == data[0]),
        Err(HeaderError::UnknownType(t)) => assert!(data[0] == 0 && t > 3 && t == data[1]),
    }
});
