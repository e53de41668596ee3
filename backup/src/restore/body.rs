//! A pack's body handed from its download (async) to its decoder (a blocking thread), chunk
//! by chunk, so decoding starts with the first bytes and at most a few chunks wait in memory.

use std::io::{BufRead, Read};

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::repository::RepoError;
use crate::repository::object_io::Streamed;

/// Read-ahead of a local pack file being decoded (the decoder asks for age's 64 KiB chunks).
const FILE_BUFFER: usize = 256 * 1024;

/// A pack's bytes for its blocking decoder.
pub(super) enum PackInput {
    /// A local repository's file, read in place.
    File(std::io::BufReader<std::fs::File>),
    /// A remote object's body, handed over by its download.
    Body(BodyReader),
}

/// The decoder's input for a fetched pack, and the download that feeds it (none for a local
/// file): the caller runs the download beside the decoder.
pub(super) fn pack_input(
    streamed: Streamed,
) -> (
    PackInput,
    Option<impl std::future::Future<Output = ()> + Send + 'static>,
) {
    match streamed {
        Streamed::File(file) => (
            PackInput::File(std::io::BufReader::with_capacity(FILE_BUFFER, file)),
            None,
        ),
        Streamed::Chunks(chunks) => {
            let (tx, input) = channel();
            (PackInput::Body(input), Some(forward(chunks, tx)))
        }
    }
}

impl BufRead for PackInput {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        match self {
            Self::File(f) => f.fill_buf(),
            Self::Body(b) => b.fill_buf(),
        }
    }

    fn consume(&mut self, n: usize) {
        match self {
            Self::File(f) => f.consume(n),
            Self::Body(b) => b.consume(n),
        }
    }
}

impl Read for PackInput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::File(f) => f.read(buf),
            Self::Body(b) => b.read(buf),
        }
    }
}

/// Chunks of one body waiting for its decoder; the download pauses (TCP backpressure) beyond.
const CHUNKS_WAITING: usize = 64;

/// Starts a hand-over: feed the body with [`forward`], read it with the [`BodyReader`].
pub(super) fn channel() -> (mpsc::Sender<Result<Bytes, RepoError>>, BodyReader) {
    let (tx, rx) = mpsc::channel(CHUNKS_WAITING);
    (
        tx,
        BodyReader {
            rx,
            current: Bytes::new(),
            failed: None,
        },
    )
}

/// Sends the body's chunks until it ends, fails, or the reader is gone.
pub(super) async fn forward(
    mut body: BoxStream<'static, Result<Bytes, RepoError>>,
    tx: mpsc::Sender<Result<Bytes, RepoError>>,
) {
    while let Some(chunk) = body.next().await {
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            return;
        }
    }
}

/// The blocking end: a `BufRead` over the chunks as they arrive.
pub(super) struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, RepoError>>,
    current: Bytes,
    /// The download's error, once it failed; reported again on every later read.
    failed: Option<String>,
}

impl BufRead for BodyReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.current.is_empty() {
            if let Some(why) = &self.failed {
                return Err(std::io::Error::other(why.clone()));
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => self.failed = Some(e.to_string()),
                None => return Ok(&[]),
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, n: usize) {
        self.current.advance(n.min(self.current.len()));
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        crate::bufread::read_from_buf(self, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_arrive_in_order_and_a_failure_is_reported() {
        let chunks: Vec<Result<Bytes, RepoError>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::new()),
            Ok(Bytes::from_static(b"defg")),
        ];
        let (tx, mut reader) = channel();
        let read = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).map(|_| all)
        });
        forward(futures::stream::iter(chunks).boxed(), tx).await;
        assert_eq!(read.await.unwrap().unwrap(), b"abcdefg");

        let chunks: Vec<Result<Bytes, RepoError>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Err(RepoError::Task("connection reset".into())),
        ];
        let (tx, mut reader) = channel();
        let read = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all)
        });
        forward(futures::stream::iter(chunks).boxed(), tx).await;
        let err = read.await.unwrap().unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
    }
}
