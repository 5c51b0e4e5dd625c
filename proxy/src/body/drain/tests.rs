use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;

use super::DrainOnDrop;
use crate::body::BoxError;

type Item = Result<Frame<Bytes>, BoxError>;

/// A body fed by a channel that records when its end was read.
fn channel_body() -> (
    mpsc::Sender<Item>,
    impl HttpBody<Data = Bytes, Error = BoxError> + Send + Unpin + 'static,
    Arc<AtomicBool>,
) {
    let (tx, rx) = mpsc::channel::<Item>(4);
    let ended = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ended);
    let stream = futures::stream::unfold(rx, move |mut rx| {
        let flag = Arc::clone(&flag);
        async move {
            match rx.recv().await {
                Some(item) => Some((item, rx)),
                None => {
                    flag.store(true, Ordering::SeqCst);
                    None
                }
            }
        }
    });
    (tx, StreamBody::new(Box::pin(stream)), ended)
}

#[tokio::test]
async fn drain_dropped_before_end_reads_the_rest_in_background() {
    let (tx, inner, ended) = channel_body();
    let mut body = DrainOnDrop::new(inner);
    tx.send(Ok(Frame::data(Bytes::from_static(b"head"))))
        .await
        .unwrap();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"head"));
    drop(body);
    tx.send(Ok(Frame::data(Bytes::new()))).await.unwrap();
    drop(tx);
    for _ in 0..100 {
        if ended.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the dropped body was not read to its end");
}

#[tokio::test]
async fn drain_passes_frames_and_end_through() {
    let body = DrainOnDrop::new(crate::body::full(Bytes::from_static(b"abc")));
    assert_eq!(body.size_hint().exact(), Some(3));
    let all = body.collect().await.unwrap().to_bytes();
    assert_eq!(&all[..], b"abc");
}
