//! COPY for CSV export and import (README, "Export", "Import").

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use deadpool_postgres::Object;
use futures_util::{future::BoxFuture, FutureExt, Stream};
use tokio_postgres::CopyOutStream;

use super::tls;

/// The `statement_timeout` of an export's COPY: it runs as long as the
/// client takes to read the file, and holds a snapshot (and a connection)
/// while it does.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(600);
/// The `statement_timeout` of an import's statements (the request time limit,
/// `REQUEST_TIMEOUT_MS`, usually ends it first).
pub const IMPORT_TIMEOUT: Duration = Duration::from_secs(60);
/// An export's body is sent in pieces of about this size (COPY gives a
/// message per row).
const CHUNK: usize = 64 * 1024;

/// The CSV of an export, as PostgreSQL's COPY writes it (RFC 4180 quoting,
/// NULL as an empty field) with CRLF line ends instead of its LF: a LF
/// outside quotes ends a record, one inside a quoted field is data and stays.
/// A stream of body chunks that owns its connection: at the end it commits
/// and gives the connection back to the pool; dropped before the end, the
/// COPY is cancelled and the connection closed.
pub struct Export {
    state: State,
    in_quotes: bool,
    /// The export's slot ([`super::Db::export`]), given back when it ends.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

// One per export, moved once into the response body: not worth a box.
#[allow(clippy::large_enum_variant)]
enum State {
    Copying {
        held: Held,
        copy: Pin<Box<CopyOutStream>>,
        buf: BytesMut,
    },
    Committing(BoxFuture<'static, Result<Bytes, tokio_postgres::Error>>),
    Done,
}

/// The export's connection; abandoned (statement cancelled, connection
/// closed) if dropped while still held.
struct Held(Option<Object>, tls::MakeRustlsConnect);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            super::abandon(object, self.1.clone());
        }
    }
}

impl Export {
    pub(super) fn new(
        object: Object,
        tls: tls::MakeRustlsConnect,
        copy: CopyOutStream,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        Export {
            state: State::Copying {
                held: Held(Some(object), tls),
                copy: Box::pin(copy),
                buf: BytesMut::with_capacity(CHUNK + 4096),
            },
            in_quotes: false,
            slot: Some(slot),
        }
    }
}

/// Appends `data` to `out` with every record-ending LF (outside quotes) as
/// CRLF; `in_quotes` carries the quoting state across pieces.
pub fn crlf(data: &[u8], in_quotes: &mut bool, out: &mut BytesMut) {
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        match b {
            b'"' => *in_quotes = !*in_quotes,
            b'\n' if !*in_quotes => {
                out.put_slice(&data[start..i]);
                out.put_slice(b"\r\n");
                start = i + 1;
            }
            _ => {}
        }
    }
    out.put_slice(&data[start..]);
}

impl Stream for Export {
    type Item = Result<Bytes, tokio_postgres::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Copying { copy, buf, .. } => match copy.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(data))) => {
                        crlf(&data, &mut this.in_quotes, buf);
                        if buf.len() >= CHUNK {
                            return Poll::Ready(Some(Ok(buf.split().freeze())));
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        // Mid-file: the client sees the body broken off, not a
                        // shorter file. Dropping the state abandons the connection.
                        this.state = State::Done;
                        this.slot = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(None) => {
                        let State::Copying { mut held, buf, .. } =
                            std::mem::replace(&mut this.state, State::Done)
                        else {
                            unreachable!()
                        };
                        let rest = buf.freeze();
                        this.state = State::Committing(
                            async move {
                                let object = held.0.as_ref().expect("held");
                                object.batch_execute("COMMIT").await?;
                                // Back to the pool.
                                held.0.take();
                                Ok(rest)
                            }
                            .boxed(),
                        );
                    }
                    Poll::Pending => {
                        // Nothing more for now: send what there is.
                        if !buf.is_empty() {
                            return Poll::Ready(Some(Ok(buf.split().freeze())));
                        }
                        return Poll::Pending;
                    }
                },
                State::Committing(commit) => {
                    let result = futures_util::ready!(commit.as_mut().poll(cx));
                    this.state = State::Done;
                    this.slot = None;
                    return Poll::Ready(match result {
                        Ok(rest) if rest.is_empty() => None,
                        other => Some(other),
                    });
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ends_become_crlf_and_quoted_newlines_stay() {
        let mut out = BytesMut::new();
        let mut q = false;
        crlf(b"a,\"x\ny\"\nb,", &mut q, &mut out);
        crlf(b"\"\"\"\n\"\n", &mut q, &mut out);
        assert_eq!(&out[..], b"a,\"x\ny\"\r\nb,\"\"\"\n\"\r\n");
        assert!(!q);
    }
}
