//! Accepting any `:authority` on the unix socket.
//!
//! gRPC clients disagree on what authority a unix-socket connection has: Go's and the
//! Kubernetes sidecars send `localhost`, but gRPC C-core (Python's grpcio, Ruby, PHP) sends the
//! percent-encoded socket path (`tmp%2Fcsi.sock`) and grpc-java the bare path. The HTTP/2
//! server underneath tonic (the `h2` crate) resets every stream whose authority is not a valid
//! URI authority with PROTOCOL_ERROR (hyperium/h2#487, open), so those clients could not even
//! call GetPluginInfo. The authority means nothing on a unix socket, so this wrapper sits
//! between the socket and the server and rewrites, in each request's header block, an
//! `:authority` that is not a valid URI authority to `localhost`; all other bytes pass through
//! unchanged.
//!
//! Header blocks are HPACK-compressed with state shared across a connection (RFC 7541), so
//! every block from the client is decoded with one decoder and re-encoded with one encoder
//! whose dynamic table the server's decoder then mirrors; frame layout follows RFC 9113 §4.1
//! and §6.2 (HEADERS, with PADDED and PRIORITY stripped) and §6.10 (CONTINUATION).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The server's SETTINGS_MAX_FRAME_SIZE (h2's default, which tonic keeps): re-encoded blocks
/// are split into frames no larger.
const MAX_FRAME: usize = 16_384;

/// Rewrites request header blocks from one connection (see the module docs).
pub struct Rewriter {
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    preface_seen: bool,
    /// A HEADERS frame waiting for its CONTINUATION frames: stream id, END_STREAM, fragment.
    pending: Option<(u32, bool, Vec<u8>)>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self {
            decoder: loona_hpack::Decoder::new(),
            encoder: loona_hpack::Encoder::new(),
            preface_seen: false,
            pending: None,
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2 from client: {what}"))
}

fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

impl Rewriter {
    /// Consumes every complete unit (preface, frame) at the front of `input`, appending what
    /// the server should see to `out`; incomplete bytes stay in `input`.
    pub fn process(&mut self, input: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<()> {
        let mut at = 0;
        if !self.preface_seen {
            if input.len() < PREFACE.len() {
                return Ok(());
            }
            // Not HTTP/2 with prior knowledge: leave everything to the server to refuse.
            out.extend_from_slice(&input[..PREFACE.len()]);
            at = PREFACE.len();
            self.preface_seen = true;
        }
        while input.len() - at >= FRAME_HEADER {
            let h = &input[at..at + FRAME_HEADER];
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            if input.len() - at < FRAME_HEADER + len {
                break;
            }
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let payload = &input[at + FRAME_HEADER..at + FRAME_HEADER + len];
            match kind {
                HEADERS => {
                    let fragment = headers_fragment(flags, payload)?;
                    self.pending = Some((stream, flags & END_STREAM != 0, fragment.to_vec()));
                }
                CONTINUATION => match self.pending.as_mut() {
                    Some((s, _, block)) if *s == stream => block.extend_from_slice(payload),
                    _ => return Err(bad("CONTINUATION without HEADERS")),
                },
                _ => out.extend_from_slice(&input[at..at + FRAME_HEADER + len]),
            }
            if matches!(kind, HEADERS | CONTINUATION) && flags & END_HEADERS != 0 {
                let (stream, end_stream, block) = self.pending.take().ok_or_else(|| bad("header block"))?;
                self.emit(stream, end_stream, &block, out)?;
            }
            at += FRAME_HEADER + len;
        }
        input.drain(..at);
        Ok(())
    }

    fn emit(&mut self, stream: u32, end_stream: bool, block: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let mut fields = self
            .decoder
            .decode(block)
            .map_err(|e| bad(&format!("header block does not decode: {e:?}")))?;
        for (name, value) in fields.iter_mut() {
            if name.as_slice() == b":authority" && http::uri::Authority::try_from(value.as_slice()).is_err() {
                *value = b"localhost".to_vec();
            }
        }
        let mut encoded = Vec::with_capacity(block.len() + 16);
        self.encoder.encode_into(
            fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
            &mut encoded,
        )?;
        let mut chunks = encoded.chunks(MAX_FRAME).peekable();
        let mut first = true;
        // An empty block still needs its HEADERS frame.
        let empty: &[u8] = &[];
        let mut next = chunks.next().unwrap_or(empty);
        loop {
            let last = chunks.peek().is_none();
            let mut flags = if last { END_HEADERS } else { 0 };
            let kind = if first {
                if end_stream {
                    flags |= END_STREAM;
                }
                HEADERS
            } else {
                CONTINUATION
            };
            frame_header(out, next.len(), kind, flags, stream);
            out.extend_from_slice(next);
            first = false;
            match chunks.next() {
                Some(c) => next = c,
                None => return Ok(()),
            }
        }
    }
}

/// The header block fragment of a HEADERS frame's payload, without padding and priority.
fn headers_fragment(flags: u8, payload: &[u8]) -> io::Result<&[u8]> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let pad = *payload
            .first()
            .ok_or_else(|| bad("PADDED HEADERS without pad length"))? as usize;
        start = 1;
        end = end
            .checked_sub(pad)
            .ok_or_else(|| bad("padding longer than the frame"))?;
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    payload
        .get(start..end)
        .ok_or_else(|| bad("HEADERS frame too short"))
}

/// A server-side connection whose client header blocks pass through a [`Rewriter`].
pub struct AnyAuthority<S> {
    inner: S,
    rewriter: Rewriter,
    raw: Vec<u8>,
    ready: Vec<u8>,
    ready_at: usize,
}

impl<S> AnyAuthority<S> {
    /// Wraps an accepted connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            raw: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_at);
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    this.raw.extend_from_slice(rb.filled());
                    this.rewriter.process(&mut this.raw, &mut this.ready)?;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for AnyAuthority<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_frame(stream: u32, flags: u8, block: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        frame_header(&mut f, block.len(), HEADERS, flags, stream);
        f.extend_from_slice(block);
        f
    }

    /// Decodes the header blocks of HEADERS/CONTINUATION frames in `wire` (after the preface).
    fn decode_all(wire: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut d = loona_hpack::Decoder::new();
        let mut at = PREFACE.len();
        let mut block = Vec::new();
        let mut out = Vec::new();
        while at < wire.len() {
            let len = u32::from_be_bytes([0, wire[at], wire[at + 1], wire[at + 2]]) as usize;
            let (kind, flags) = (wire[at + 3], wire[at + 4]);
            let payload = &wire[at + 9..at + 9 + len];
            if kind == HEADERS || kind == CONTINUATION {
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    out.push(d.decode(&block).expect("decodes"));
                    block.clear();
                }
            }
            at += 9 + len;
        }
        out
    }

    #[test]
    fn path_authorities_become_localhost_and_the_rest_survives_byte_splits() {
        let mut client = loona_hpack::Encoder::new();
        let req = |authority: &'static [u8]| -> Vec<(&'static [u8], &'static [u8])> {
            vec![
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", b"/csi.v1.Identity/GetPluginInfo"),
                (b":authority", authority),
                (b"content-type", b"application/grpc"),
            ]
        };
        let mut wire = PREFACE.to_vec();
        // A SETTINGS frame passes through untouched.
        frame_header(&mut wire, 0, 0x4, 0, 0);
        wire.extend(headers_frame(
            1,
            END_HEADERS,
            &client.encode(req(b"tmp%2Fcsi.sock")),
        ));
        // Second request: the client's encoder now refers to its dynamic table.
        let block = client.encode(req(b"tmp%2Fcsi.sock"));
        let (a, b) = block.split_at(block.len() / 2);
        let mut padded = vec![3u8];
        padded.extend_from_slice(&[0, 0, 0, 0, 16]);
        padded.extend_from_slice(a);
        padded.extend_from_slice(&[0, 0, 0]);
        wire.extend(headers_frame(3, PADDED | PRIORITY | END_STREAM, &padded));
        let mut cont = Vec::new();
        frame_header(&mut cont, b.len(), CONTINUATION, END_HEADERS, 3);
        cont.extend_from_slice(b);
        wire.extend(cont);
        wire.extend(headers_frame(
            5,
            END_HEADERS,
            &client.encode(req(b"localhost:50051")),
        ));

        // Fed one byte at a time, as a slow socket might.
        let mut rw = Rewriter::default();
        let (mut raw, mut out) = (Vec::new(), Vec::new());
        for byte in &wire {
            raw.push(*byte);
            rw.process(&mut raw, &mut out).expect("process");
        }
        assert!(raw.is_empty());
        assert_eq!(&out[..PREFACE.len() + 9], &wire[..PREFACE.len() + 9]);
        let blocks = decode_all(&out);
        assert_eq!(blocks.len(), 3);
        let authority = |b: &Vec<(Vec<u8>, Vec<u8>)>| {
            b.iter()
                .find(|(n, _)| n == b":authority")
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(authority(&blocks[0]).as_deref(), Some("localhost"));
        assert_eq!(authority(&blocks[1]).as_deref(), Some("localhost"));
        assert_eq!(authority(&blocks[2]).as_deref(), Some("localhost:50051"));
        assert!(
            blocks[1]
                .iter()
                .any(|(n, v)| n == b":path" && v == b"/csi.v1.Identity/GetPluginInfo")
        );
        // END_STREAM of the padded request survived the rewrite.
        let second = out
            .windows(9)
            .position(|w| w[3] == HEADERS && u32::from_be_bytes([w[5], w[6], w[7], w[8]]) == 3)
            .expect("stream 3 headers");
        assert_eq!(out[second + 4] & END_STREAM, END_STREAM);
    }

    #[test]
    fn garbage_header_blocks_are_refused() {
        let mut rw = Rewriter::default();
        let mut raw = PREFACE.to_vec();
        raw.extend(headers_frame(1, END_HEADERS, &[0xff, 0xff, 0xff, 0xff]));
        assert!(rw.process(&mut raw, &mut Vec::new()).is_err());
        let mut rw = Rewriter::default();
        let mut raw = PREFACE.to_vec();
        let mut f = Vec::new();
        frame_header(&mut f, 1, CONTINUATION, END_HEADERS, 1);
        f.push(0x82);
        raw.extend(f);
        assert!(rw.process(&mut raw, &mut Vec::new()).is_err());
    }
}
