//! Arbitrary bytes, cut into arbitrary chunks, fed to the frp frame decoder.
//!
//! Beyond "no panic", checks what the session layer relies on: chunking never changes the
//! result, the buffer stays bounded by the frame limit, and whatever decodes re-encodes to
//! the same message.
#![no_main]

use bytes::BytesMut;
use harp::tunnel::codec::{Decoder, FrameError, HEADER_LEN, MAX_BODY_LEN};
use harp::tunnel::Message;
use libfuzzer_sys::fuzz_target;

/// Messages up to the first error, and that error's kind.
type Outcome = (Vec<Message>, Option<String>);

fn error_kind(e: &FrameError) -> String {
    match e {
        // The serde_json text depends on where the parser stopped, which is the same for
        // any chunking since the whole body is parsed at once; compare it too.
        FrameError::Json { msg_type, source } => format!("json {msg_type} {source}"),
        other => other.to_string(),
    }
}

fn run(stream: &[u8], chunk_sizes: &[u8]) -> Outcome {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::new();
    let mut msgs = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    // Growth is bounded by one frame at the limit plus the largest chunk, whatever the peer
    // claims in a length field.
    let largest_chunk = if chunk_sizes.is_empty() {
        stream.len()
    } else {
        256
    };
    let bound = 4 * (HEADER_LEN + MAX_BODY_LEN + largest_chunk);
    loop {
        let size = match chunk_sizes.get(i % chunk_sizes.len().max(1)) {
            Some(&s) => usize::from(s) + 1,
            None => rest.len().max(1),
        };
        i += 1;
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            let result = decoder.decode(&mut buf);
            assert!(
                buf.capacity() <= bound,
                "decoder buffer grew to {} (bound {bound})",
                buf.capacity()
            );
            match result {
                Ok(Some(m)) => msgs.push(m),
                Ok(None) => break,
                Err(e) => return (msgs, Some(error_kind(&e))),
            }
        }
        if rest.is_empty() {
            return (msgs, None);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (sizes, stream) = data.split_at(data.len().min(8));
    let chunked = run(stream, sizes);
    let whole = run(stream, &[]);
    assert_eq!(chunked, whole, "chunking changed the decoded stream");

    for msg in &whole.0 {
        // Re-encoding may grow a body (Go-style escaping of `<`, `>`, `&`), so parse the
        // JSON directly instead of through the size-limited decoder.
        let again = Message::from_json(msg.message_type(), &msg.to_json())
            .expect("our own encoding must parse");
        assert_eq!(&again, msg, "message did not survive a round trip");
    }
});
