use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};

use super::*;

fn chunks(parts: Vec<&'static [u8]>) -> Body {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
        .into_iter()
        .map(|p| Ok(Frame::data(Bytes::from_static(p))))
        .collect();
    crate::body::boxed(StreamBody::new(futures::stream::iter(frames)))
}

#[tokio::test]
async fn replay_second_reader_gets_the_whole_body_again() {
    let r = Replay::new(chunks(vec![b"ab", b"cd", b"e"]));
    let first = r.reader().collect().await.unwrap().to_bytes();
    assert_eq!(&first[..], b"abcde");
    assert!(r.replayable());
    let second = r.reader().collect().await.unwrap().to_bytes();
    assert_eq!(&second[..], b"abcde");
}

#[tokio::test]
async fn replay_after_partial_read_resumes_from_the_client() {
    let r = Replay::new(chunks(vec![b"ab", b"cd"]));
    let mut first = r.reader();
    let frame = first.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"ab"));
    drop(first);
    let whole = r.reader().collect().await.unwrap().to_bytes();
    assert_eq!(&whole[..], b"abcd");
}

#[tokio::test]
async fn replay_past_the_cap_streams_once_and_is_not_replayable() {
    let big: &'static [u8] = Box::leak(vec![b'x'; REPLAY_CAP + 1].into_boxed_slice());
    let r = Replay::new(chunks(vec![b"a", big]));
    let first = r.reader().collect().await.unwrap().to_bytes();
    assert_eq!(first.len(), REPLAY_CAP + 2);
    assert!(!r.replayable());
    assert!(r.reader().collect().await.is_err());
}

#[tokio::test]
async fn replay_of_an_empty_body_is_empty_with_exact_size() {
    let r = Replay::new(crate::body::empty());
    let reader = r.reader();
    assert!(reader.is_end_stream());
    assert_eq!(reader.size_hint().exact(), Some(0));
    assert!(r.reader().collect().await.unwrap().to_bytes().is_empty());
}

#[tokio::test]
async fn replay_of_a_sized_body_ends_with_its_last_chunk() {
    let r = Replay::new(crate::body::full(Bytes::from_static(b"payload")));
    let mut first = r.reader();
    assert!(!first.is_end_stream());
    let frame = first.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"payload"));
    // END_STREAM rides on the last DATA frame: nothing is left to poll for.
    assert!(first.is_end_stream());
    let second = r.reader();
    assert!(!second.is_end_stream());
    let again = second.collect().await.unwrap().to_bytes();
    assert_eq!(&again[..], b"payload");
}
