use super::*;

#[test]
fn headers_round_trip_and_bad_ones_are_named() {
    let h = request_header(Op::Get, 1234);
    assert_eq!(
        parse_request_header(&h, 4096),
        Ok(Header {
            op: Op::Get as u8,
            status: 0,
            len: 1234
        })
    );
    let r = reply_header(Op::Put as u8, Status::TooLarge, 7);
    let parsed = parse_reply_header(&r, 4096).expect("valid");
    assert_eq!(
        (Status::from_u8(parsed.status), parsed.op, parsed.len),
        (Status::TooLarge, 5, 7)
    );
    assert_eq!(
        parse_request_header(&h, 1000),
        Err(HeaderError::TooLarge {
            len: 1234,
            max: 1000
        })
    );
    let mut bad = h;
    bad[0] = b'*';
    assert_eq!(
        parse_request_header(&bad, 4096),
        Err(HeaderError::Magic(b'*'))
    );
    let mut bad = h;
    bad[1] = 9;
    assert_eq!(
        parse_request_header(&bad, 4096),
        Err(HeaderError::Version(9))
    );
    assert_ne!(MAGIC, b'*', "RESP sniffing relies on it");
}

#[test]
fn key_lists_round_trip_and_lying_counts_are_refused() {
    let keys: Vec<BlockKey> = (0..5u128).map(|i| BlockKey(i << 100 | i)).collect();
    let body = keys_body(&keys);
    let mut r = Reader::new(&body);
    assert_eq!(r.keys().expect("valid"), keys);
    r.end().expect("consumed");
    // A count that promises more keys than the body holds fails before allocating.
    let mut lying = body.clone();
    lying[..4].copy_from_slice(&1_000_000u32.to_le_bytes());
    assert!(Reader::new(&lying).keys().is_err());
    let mut lying = body.clone();
    lying[..4].copy_from_slice(&6u32.to_le_bytes());
    assert_eq!(
        Reader::new(&lying).keys(),
        Err(BodyError("count exceeds the body"))
    );
    let mut r = Reader::new(&body[..body.len() - 1]);
    assert!(r.keys().is_err());
    let mut trailing = body;
    trailing.push(0);
    let mut r = Reader::new(&trailing);
    r.keys().expect("keys parse");
    assert!(r.end().is_err());
}

#[test]
fn bitmap_hello_and_stats_round_trip() {
    let bits: Vec<bool> = (0..19).map(|i| i % 3 == 0).collect();
    assert_eq!(parse_bitmap(&bitmap_body(&bits)).expect("valid"), bits);
    let info = ServerInfo {
        caps: CAP_SHM,
        capacity: 1 << 30,
        max_value: 64 << 20,
        max_frame: (64 << 20) + 4096,
        arena_len: 1 << 30,
        lease_ms: 30_000,
    };
    assert_eq!(ServerInfo::decode(&info.encode()), Ok(info));
    assert!(ServerInfo::decode(&info.encode()[..10]).is_err());
    let s = Stats {
        used_bytes: 5,
        connections: 2,
        ..Stats::default()
    };
    assert_eq!(Stats::from_slice(&s.to_vec()), s);
    assert_eq!(Stats::from_slice(&[1]).capacity_bytes, 1);
    let hello = hello_body(Some("tok"), CAP_SHM);
    let mut r = Reader::new(&hello);
    let n = r.u16().expect("len") as usize;
    assert_eq!(r.bytes(n).expect("token"), b"tok");
    assert_eq!(r.u32(), Ok(CAP_SHM));
}

#[test]
fn op_and_status_bytes_map_back() {
    for b in 0..=255u8 {
        if let Some(op) = Op::from_u8(b) {
            assert_eq!(op as u8, b);
        }
    }
    assert_eq!(Op::from_u8(0), None);
    assert_eq!((0..=255u8).filter_map(Op::from_u8).count(), 11);
    for b in 0..=5u8 {
        assert_eq!(Status::from_u8(b) as u8, b);
    }
    for b in 0..=3u8 {
        assert_eq!(PutStatus::from_u8(b) as u8, b);
    }
    assert_eq!(PutStatus::from_u8(200), PutStatus::NoSpace);
    assert_eq!(Status::from_u8(200), Status::BadRequest);
    assert!(PutStatus::Exists.is_ok() && !PutStatus::NoSpace.is_ok());
}
