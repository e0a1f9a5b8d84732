use super::*;
use crate::types::backend::{hash_hex, HashKind};

fn key_for(data: &[u8], ext: &str) -> Key {
    Key::from_str(&format!(
        "SHA256E-s{}--{}{ext}",
        data.len(),
        hash_hex(HashKind::Sha2_256, data)
    ))
    .unwrap()
}

fn node() -> MemNode {
    MemNode::new(
        Uuid::parse("de2c220a-31f0-4f79-a0cf-2ae34a0559b9").unwrap(),
        "mem",
    )
}

#[derive(Default)]
struct Log(Mutex<Vec<(String, bool)>>);
impl LocationSink for Log {
    fn record(&self, key: &Key, _uuid: &Uuid, present: bool) {
        self.0.lock().unwrap().push((key.to_string(), present));
    }
}

async fn upload(
    n: &MemNode,
    key: &Key,
    data: &[u8],
    validity: Validity,
) -> Result<Stored, NodeError> {
    let PutStart::Accept(mut sink) = n.put(key, &AssociatedFile::none()).await? else {
        panic!("expected to be asked for data")
    };
    let from = sink.offset() as usize;
    sink.begin((data.len() - from) as u64).await?;
    sink.write(&data[from..]).await?;
    sink.finish(validity).await
}

#[tokio::test]
async fn stores_only_verified_content_and_logs_it() {
    let log = Arc::new(Log::default());
    let n = node().with_locations(log.clone());
    let data = b"hello world\n";
    let k = key_for(data, ".txt");
    for v in [Validity::Valid, Validity::Invalid, Validity::Unknown] {
        let wrong = b"hello worlD\n";
        let e = upload(&n, &k, wrong, v).await.unwrap_err();
        assert!(matches!(e, NodeError::Verification { .. }), "{e}");
        assert!(!n.check_present(&k).await.unwrap());
        assert_eq!(n.partial(&k), None, "bad content is thrown away");
    }
    let s = upload(&n, &k, data, Validity::Valid).await.unwrap();
    assert!(s.stored && s.plus.is_empty());
    assert_eq!(n.content(&k).unwrap(), data);
    assert_eq!(*log.0.lock().unwrap(), vec![(k.to_string(), true)]);
    assert!(matches!(
        n.put(&k, &AssociatedFile::none()).await.unwrap(),
        PutStart::AlreadyHave { .. }
    ));
}

#[tokio::test]
async fn unverified_mode_checks_sizes_only() {
    let n = node().with_verify(false);
    let data = b"hello world\n";
    let k = key_for(data, ".txt");
    upload(&n, &k, b"HELLO WORLD\n", Validity::Unknown)
        .await
        .unwrap();
    assert_eq!(n.content(&k).unwrap(), b"HELLO WORLD\n");
}

#[tokio::test]
async fn an_interrupted_upload_resumes_where_it_stopped() {
    let n = node();
    let data = b"hello world";
    let k = key_for(data, ".txt");
    let PutStart::Accept(mut sink) = n.put(&k, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    assert_eq!(sink.offset(), 0);
    sink.begin(11).await.unwrap();
    sink.write(b"hello ").await.unwrap();
    sink.abort().await;
    assert_eq!(n.partial(&k).unwrap(), b"hello ");
    assert!(!n.check_present(&k).await.unwrap());

    // A sink dropped without a word keeps its bytes too.
    let PutStart::Accept(mut sink) = n.put(&k, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    assert_eq!(sink.offset(), 6);
    sink.begin(5).await.unwrap();
    sink.write(b"wo").await.unwrap();
    drop(sink);
    assert_eq!(n.partial(&k).unwrap(), b"hello wo");

    // The resumed upload is verified from the first byte (the partial is hashed too).
    let s = upload(&n, &k, data, Validity::Valid).await.unwrap();
    assert!(s.stored);
    assert_eq!(n.content(&k).unwrap(), data);
    assert_eq!(n.partial(&k), None);
}

#[tokio::test]
async fn a_partial_longer_than_the_key_starts_over() {
    let n = node();
    let data = b"abc";
    let k = key_for(data, "");
    n.insert_partial(k.clone(), b"abcdef".to_vec());
    let PutStart::Accept(sink) = n.put(&k, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    assert_eq!(sink.offset(), 0);
    sink.abort().await;
    assert_eq!(n.partial(&k), None);
}

#[tokio::test]
async fn short_or_long_writes_are_refused() {
    let n = node();
    let data = b"hello world";
    let k = key_for(data, ".txt");
    let PutStart::Accept(mut sink) = n.put(&k, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    assert!(sink.write(b"x").await.is_err(), "write before begin");
    sink.begin(11).await.unwrap();
    assert!(
        sink.write(&[b'x'; 12]).await.is_err(),
        "more than announced"
    );
    sink.write(b"hello").await.unwrap();
    let e = sink.finish(Validity::Valid).await.unwrap_err();
    assert!(e.to_string().contains("received 5 bytes of 11"), "{e}");
    assert_eq!(n.partial(&k).unwrap(), b"hello");
}

#[tokio::test]
async fn capacity_is_enforced() {
    let n = node().with_capacity(10);
    let data = b"hello world";
    let k = key_for(data, ".txt");
    let PutStart::Accept(mut sink) = n.put(&k, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    let e = sink.begin(11).await.unwrap_err();
    assert!(
        matches!(
            e,
            NodeError::Full {
                needed: 11,
                available: 10,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn downloads_from_an_offset() {
    let n = node();
    let data = b"hello world";
    let k = key_for(data, ".txt");
    assert!(n
        .get(&k, 0, &AssociatedFile::none())
        .await
        .unwrap()
        .is_none());
    n.insert(k.clone(), data.to_vec());
    for (offset, want) in [
        (0u64, &b"hello world"[..]),
        (6, b"world"),
        (11, b""),
        (99, b""),
    ] {
        let mut c = n
            .get(&k, offset, &AssociatedFile::none())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.len(), want.len() as u64);
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        loop {
            let r = c.read(&mut buf).await.unwrap();
            if r == 0 {
                break;
            }
            got.extend_from_slice(&buf[..r]);
        }
        assert_eq!(got, want);
        assert_eq!(c.validity().await.unwrap(), Validity::Valid);
        c.done(true).await.unwrap();
    }
}

#[tokio::test]
async fn locks_block_removal_until_released() {
    let log = Arc::new(Log::default());
    let n = node().with_locations(log.clone());
    let k = key_for(b"x", "");
    assert!(
        n.lock_content(&k).await.unwrap().is_none(),
        "absent content cannot be locked"
    );
    n.insert(k.clone(), b"x".to_vec());
    let l1 = n.lock_content(&k).await.unwrap().unwrap();
    let l2 = n.lock_content(&k).await.unwrap().unwrap();
    assert_eq!(n.lock_count(&k), 2);
    assert!(!n.remove(&k, None).await.unwrap().removed);
    l1.unlock().await.unwrap();
    assert!(
        !n.remove(&k, None).await.unwrap().removed,
        "one lock still held"
    );
    drop(l2);
    assert_eq!(n.lock_count(&k), 0);
    assert!(n.remove(&k, None).await.unwrap().removed);
    assert!(!n.check_present(&k).await.unwrap());
    assert_eq!(*log.0.lock().unwrap(), vec![(k.to_string(), false)]);
    // Removing what is not there succeeds.
    assert!(n.remove(&k, None).await.unwrap().removed);
}

#[tokio::test]
async fn an_abandoned_lock_protects_for_the_retention_time() {
    let n = node().with_lock_retention(600);
    n.set_time(1000);
    let k = key_for(b"x", "");
    n.insert(k.clone(), b"x".to_vec());
    // Cleanly unlocked: no protection left.
    n.lock_content(&k)
        .await
        .unwrap()
        .unwrap()
        .unlock()
        .await
        .unwrap();
    assert!(n.remove(&k, None).await.unwrap().removed);
    // Abandoned: protected until 1600.
    n.insert(k.clone(), b"x".to_vec());
    drop(n.lock_content(&k).await.unwrap().unwrap());
    n.advance_time(599);
    assert!(!n.remove(&k, None).await.unwrap().removed);
    n.advance_time(1);
    assert!(n.remove(&k, None).await.unwrap().removed);
}

#[tokio::test]
async fn remove_before_honours_the_deadline() {
    let n = node();
    n.set_time(998);
    assert_eq!(n.timestamp().await.unwrap(), 998);
    let k = key_for(b"x", "");
    n.insert(k.clone(), b"x".to_vec());
    assert!(!n.remove(&k, Some(993)).await.unwrap().removed);
    assert!(!n.remove(&k, Some(998)).await.unwrap().removed);
    assert!(n.check_present(&k).await.unwrap());
    assert!(n.remove(&k, Some(1598)).await.unwrap().removed);
}

#[tokio::test]
async fn data_present_reports_the_store() {
    let n = node();
    let k = key_for(b"x", "");
    let PutStart::Accept(sink) = n.put(&k, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    assert!(!sink.data_present().await.unwrap().stored);
    let PutStart::Accept(sink) = n.put(&k, &AssociatedFile::none()).await.unwrap() else {
        panic!()
    };
    n.insert(k.clone(), b"x".to_vec());
    assert!(sink.data_present().await.unwrap().stored);
}

#[tokio::test]
async fn a_failing_node_says_so() {
    let n = node();
    n.set_failing(Some("connection refused"));
    let k = key_for(b"x", "");
    let e = n.check_present(&k).await.unwrap_err();
    assert!(matches!(e, NodeError::Unreachable { .. }));
    assert!(e.to_string().contains("connection refused"));
    assert!(n.timestamp().await.is_err());
    n.set_failing(None);
    assert!(!n.check_present(&k).await.unwrap());
}

#[tokio::test]
async fn fail_after_breaks_transfers_after_exactly_that_many_bytes() {
    let n = node();
    let data: Vec<u8> = (0..100u8).collect();
    let k = key_for(&data, "");
    // An upload breaks inside the write that crosses the budget; what arrived stays as
    // a partial for a later resume.
    n.fail_after(30, "cable cut");
    let PutStart::Accept(mut sink) = n.put(&k, &AssociatedFile::none()).await.unwrap() else {
        panic!("expected to be asked for data")
    };
    sink.begin(100).await.unwrap();
    sink.write(&data[..20]).await.unwrap();
    let e = sink.write(&data[20..40]).await.unwrap_err();
    assert!(e.to_string().contains("cable cut"), "{e}");
    sink.abort().await;
    assert_eq!(n.partial(&k).as_deref(), Some(&data[..30]));
    assert!(n.check_present(&k).await.is_err());

    // Downloads too: healed, then allowed 45 bytes.
    n.set_failing(None);
    n.insert(k.clone(), data.clone());
    n.fail_after(45, "gone");
    let mut c = n
        .get(&k, 0, &AssociatedFile::none())
        .await
        .unwrap()
        .unwrap();
    let mut buf = [0u8; 40];
    assert_eq!(c.read(&mut buf).await.unwrap(), 40);
    assert_eq!(c.read(&mut buf).await.unwrap(), 5);
    assert_eq!(&buf[..5], &data[40..45]);
    assert!(c.read(&mut buf).await.is_err());
    assert!(n.timestamp().await.is_err());
}

#[tokio::test]
async fn keys_with_path_characters_are_just_keys() {
    let n = node();
    for name in ["a/../../b", "..", "x/y", "/abs"] {
        let k = Key::from_str(&format!("WORM-s1--{name}")).unwrap();
        upload(&n, &k, b"z", Validity::Valid).await.unwrap();
        assert_eq!(n.content(&k).unwrap(), b"z");
    }
    assert_eq!(n.keys().len(), 4);
}
