use super::*;

const LIMITS: Limits = Limits {
    max_args: 4,
    max_bulk: 8,
    max_command: 12,
};

fn args_of(buf: &[u8]) -> Vec<Vec<u8>> {
    match parse(buf, &LIMITS).expect("parses") {
        Frame::Command { len, args } => {
            assert_eq!(len, buf.len(), "one whole command");
            args.iter().map(|&(s, e)| buf[s..e].to_vec()).collect()
        }
        Frame::Incomplete { need } => panic!("incomplete, need {need}"),
    }
}

#[test]
fn parses_a_command_and_its_binary_arguments() {
    assert_eq!(args_of(b"*1\r\n$4\r\nPING\r\n"), vec![b"PING".to_vec()]);
    let cmd = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n\r\n\0\xff\r\n";
    assert_eq!(
        args_of(cmd),
        vec![b"SET".to_vec(), b"k".to_vec(), b"\r\n\0\xff".to_vec()]
    );
    assert_eq!(
        args_of(b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n"),
        vec![b"GET".to_vec(), Vec::new()]
    );
}

#[test]
fn every_prefix_of_a_command_is_incomplete_with_a_growing_need() {
    let cmd = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\nabcd\r\n";
    for cut in 0..cmd.len() {
        match parse(&cmd[..cut], &LIMITS) {
            Ok(Frame::Incomplete { need }) => {
                assert!(need > cut && need <= cmd.len(), "cut {cut}: need {need}")
            }
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    assert!(matches!(parse(cmd, &LIMITS), Ok(Frame::Command { .. })));
}

#[test]
fn pipelined_commands_are_taken_one_at_a_time() {
    let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n*1"[..]);
    let mut seen = Vec::new();
    while let Ok(Frame::Command { len, args }) = parse(&buf, &LIMITS) {
        seen.push(take_command(&mut buf, len, &args));
    }
    assert_eq!(seen.len(), 2);
    assert_eq!(&seen[1][1][..], b"hi");
    assert_eq!(&buf[..], b"*1", "the partial third command stays buffered");
}

#[test]
fn malformed_and_oversized_requests_are_refused() {
    let cases: &[(&[u8], FrameError)] = &[
        (b"PING\r\n", FrameError::Inline),
        (b"*0\r\n", FrameError::Malformed("empty command")),
        (
            b"*-1\r\n",
            FrameError::Malformed("invalid multibulk length"),
        ),
        (b"*x\r\n", FrameError::Malformed("invalid multibulk length")),
        (
            b"*1\r\n+PING\r\n",
            FrameError::Malformed("expected '$', got something else"),
        ),
        (
            b"*1\r\n$-1\r\n",
            FrameError::Malformed("invalid bulk length"),
        ),
        (
            b"*1\r\n$4\r\nPINGxx",
            FrameError::Malformed("bulk string not terminated by CRLF"),
        ),
        (
            b"*1\r\n$4\rxPING\r\n",
            FrameError::Malformed("header not terminated by CRLF"),
        ),
        (
            b"*99999999999999999999999\r\n",
            FrameError::Malformed("length overflows"),
        ),
        (
            b"*1111111111111111111111111111111111",
            FrameError::Malformed("header line too long"),
        ),
        (
            b"*5\r\n",
            FrameError::TooLarge {
                what: "argument count",
                got: 5,
                limit: 4,
            },
        ),
        (
            b"*1\r\n$9\r\n",
            FrameError::TooLarge {
                what: "bulk length",
                got: 9,
                limit: 8,
            },
        ),
        (
            b"*2\r\n$8\r\n12345678\r\n$5\r\n",
            FrameError::TooLarge {
                what: "command size",
                got: 13,
                limit: 12,
            },
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse(input, &LIMITS).as_ref(),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn replies_follow_the_negotiated_protocol() {
    let mut buf = BytesMut::new();
    let mut out = Out {
        buf: &mut buf,
        proto: Proto::Resp2,
    };
    out.null();
    out.map(1);
    out.simple("OK");
    out.int(-3);
    out.error("ERR bad\r\nthing");
    out.bulk(b"a\r\nb");
    assert_eq!(
        &buf[..],
        b"$-1\r\n*2\r\n+OK\r\n:-3\r\n-ERR bad  thing\r\n$4\r\na\r\nb\r\n"
    );
    let mut buf = BytesMut::new();
    let mut out = Out {
        buf: &mut buf,
        proto: Proto::Resp3,
    };
    out.null();
    out.map(2);
    assert_eq!(&buf[..], b"_\r\n%2\r\n");
}
