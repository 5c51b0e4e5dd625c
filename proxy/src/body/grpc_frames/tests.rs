use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::BodyExt;

use super::{Direction, FrameCounter, GrpcFrames, GrpcMessages};

/// A message: flag 0, big-endian length, payload.
fn message(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn count_chunks(chunks: &[&[u8]]) -> Vec<u64> {
    let mut c = FrameCounter::default();
    chunks.iter().map(|chunk| c.count(chunk)).collect()
}

#[test]
fn count_one_message_per_chunk_counts_each() {
    let a = message(b"hello");
    let b = message(b"world!");
    assert_eq!(count_chunks(&[&a, &b]), vec![1, 1]);
}

#[test]
fn count_several_messages_in_one_chunk_counts_all() {
    let mut data = message(b"one");
    data.extend(message(b""));
    data.extend(message(&[7; 300]));
    assert_eq!(count_chunks(&[&data]), vec![3]);
}

#[test]
fn count_empty_messages_counts_each_header() {
    let mut data = message(b"");
    data.extend(message(b""));
    assert_eq!(count_chunks(&[&data]), vec![2]);
    // The probe's body: one empty message.
    assert_eq!(count_chunks(&[b"\0\0\0\0\0"]), vec![1]);
}

#[test]
fn count_header_split_across_chunks_counts_once() {
    let mut data = message(&[1; 258]);
    data.extend(message(b"xy"));
    // Every split point, including inside both headers.
    for cut in 0..=data.len() {
        let (a, b) = data.split_at(cut);
        let total: u64 = count_chunks(&[a, b]).iter().sum();
        assert_eq!(total, 2, "cut at {cut}");
    }
    // Byte by byte: the second message begins at its own flag byte.
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    let counts = count_chunks(&bytes);
    assert_eq!(counts.iter().sum::<u64>(), 2);
    assert_eq!(counts[0], 1);
    assert_eq!(counts[5 + 258], 1);
}

#[test]
fn count_message_spanning_chunks_counts_at_its_first_byte() {
    let data = message(&[9; 100]);
    let (a, rest) = data.split_at(3);
    let (b, c) = rest.split_at(50);
    assert_eq!(count_chunks(&[a, b, c]), vec![1, 0, 0]);
}

#[test]
fn count_large_length_skips_payload_without_counting() {
    // A 16 MiB message's header, then payload bytes that look like headers.
    let mut c = FrameCounter::default();
    assert_eq!(c.count(&[0, 0x01, 0, 0, 0]), 1);
    assert_eq!(c.count(&[0; 4096]), 0);
}

#[tokio::test]
async fn grpc_frames_body_adds_to_its_direction() {
    let mut data = message(b"a");
    data.extend(message(b"bc"));
    let messages = Arc::new(GrpcMessages::default());
    let body = http_body_util::Full::new(Bytes::from(data));
    let framed = GrpcFrames::new(body, Arc::clone(&messages), Direction::Response);
    let collected = framed.collect().await.map(|c| c.to_bytes().len());
    assert_eq!(collected.ok(), Some(13));
    assert_eq!(messages.response.load(Ordering::Relaxed), 2);
    assert_eq!(messages.request.load(Ordering::Relaxed), 0);
}
