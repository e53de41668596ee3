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

/// Batches of one body's chunks waiting for its decoder; the download pauses (TCP
/// backpressure) beyond.
const BATCHES_WAITING: usize = 4;
/// A body's chunks (socket reads of varying size) are handed over in batches of about this
/// many bytes, so at most ~1.25 MiB of a pack waits for its decoder. Queued one by one, 64
/// deep, chunks held several MiB per pack in flight: restoring 1 GiB from RGW peaked at
/// 94–104 MiB RSS, now 68–70 MiB.
const BATCH_BYTES: usize = 256 * 1024;

/// Some consecutive chunks of a body, or the download's failure after them.
type Batch = (Vec<Bytes>, Option<RepoError>);

/// Starts a hand-over: feed the body with [`forward`], read it with the [`BodyReader`].
pub(super) fn channel() -> (mpsc::Sender<Batch>, BodyReader) {
    let (tx, rx) = mpsc::channel(BATCHES_WAITING);
    (
        tx,
        BodyReader {
            rx,
            chunks: std::collections::VecDeque::new(),
            failure: None,
            failed: None,
        },
    )
}

/// Sends the body's chunks, in batches of about [`BATCH_BYTES`], until it ends, fails, or the
/// reader is gone.
pub(super) async fn forward(mut body: BoxStream<'static, Result<Bytes, RepoError>>, tx: mpsc::Sender<Batch>) {
    let mut batch = Vec::new();
    let mut bytes = 0;
    loop {
        let (ended, failure) = match body.next().await {
            Some(Ok(chunk)) => {
                bytes += chunk.len();
                batch.push(chunk);
                (false, None)
            }
            Some(Err(e)) => (true, Some(e)),
            None => (true, None),
        };
        if ended || bytes >= BATCH_BYTES {
            let sent = tx.send((std::mem::take(&mut batch), failure)).await;
            if sent.is_err() || ended {
                return;
            }
            bytes = 0;
        }
    }
}

/// The blocking end: a `BufRead` over the chunks as they arrive.
pub(super) struct BodyReader {
    rx: mpsc::Receiver<Batch>,
    /// The current batch's chunks not yet read.
    chunks: std::collections::VecDeque<Bytes>,
    /// The download's failure, reported once the chunks before it are read.
    failure: Option<RepoError>,
    /// The download's error, once it was reported; reported again on every later read.
    failed: Option<String>,
}

impl BufRead for BodyReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.chunks.front().is_none_or(Bytes::is_empty) {
            if self.chunks.pop_front().is_some() {
                continue;
            }
            if let Some(e) = self.failure.take() {
                self.failed = Some(e.to_string());
            }
            if let Some(why) = &self.failed {
                return Err(std::io::Error::other(why.clone()));
            }
            match self.rx.blocking_recv() {
                Some((chunks, failure)) => {
                    self.chunks = chunks.into();
                    self.failure = failure;
                }
                None => return Ok(&[]),
            }
        }
        Ok(self.chunks.front().map_or(&[], |c| &c[..]))
    }

    fn consume(&mut self, n: usize) {
        if let Some(chunk) = self.chunks.front_mut() {
            chunk.advance(n.min(chunk.len()));
        }
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
