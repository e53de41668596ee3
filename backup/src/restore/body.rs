//! A pack's body handed from its download (async) to its decoder (a blocking thread), chunk
//! by chunk, so decoding starts with the first bytes and at most a few chunks wait in memory.

use std::io::{BufRead, Read};

use bytes::{Buf, Bytes};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::repository::RepoError;

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
