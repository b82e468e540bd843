//! The command table: each command checks its arity and options, then calls the store.
//!
//! Replies follow Redis 7's wording where clients or people match on it (`-NOAUTH`,
//! `-WRONGPASS`, `-NOPROTO`, `wrong number of arguments`). Nothing from the request is echoed
//! unbounded: an unknown command's name is cut to [`ECHO_NAME`] printable bytes.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use subtle::ConstantTimeEq;
use tokio::io::AsyncWrite;

use super::codec::Proto;
use super::{Conn, MAX_KEY, Replies, RespConfig, RespStore, key_of};
use crate::proto::PutStatus;

/// Most bytes of an unknown command's name quoted back.
const ECHO_NAME: usize = 32;
/// Longest `CLIENT SETNAME` / `HELLO .. SETNAME` accepted.
const MAX_CLIENT_NAME: usize = 256;
/// Redis version reported by `HELLO` and `INFO`: the command semantics this subset follows.
const COMPAT_VERSION: &str = "7.2.0";

/// Connection ids for `HELLO` / `CLIENT ID`.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id.
pub(super) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Runs one command and encodes its reply (flushing mid-reply for large `MGET`s).
pub(super) async fn run<B, W>(
    conn: &mut Conn,
    store: &B,
    cfg: &RespConfig,
    args: &[Bytes],
    replies: &mut Replies,
    wr: &mut W,
) -> io::Result<()>
where
    B: RespStore + ?Sized,
    W: AsyncWrite + Unpin,
{
    let p = conn.proto;
    let name = &args[0];
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if !(conn.authed || is("AUTH") || is("HELLO") || is("QUIT")) {
        replies.out(p).error("NOAUTH Authentication required.");
        return Ok(());
    }
    let rest = &args[1..];
    if let Some(bad) = rest
        .iter()
        .find(|a| a.len() > MAX_KEY && !is("SET") && !is("MSET"))
    {
        replies.out(p).error(&format!(
            "ERR argument of {} bytes is over the {MAX_KEY}-byte limit",
            bad.len()
        ));
        return Ok(());
    }
    match () {
        () if is("GET") => {
            let [k] = rest else {
                return arity(replies, p, "get");
            };
            match store.get(key_of(k)) {
                Some(v) => replies.value(p, v),
                None => replies.out(p).null(),
            }
        }
        () if is("SET") => set(store, cfg, rest, replies, p),
        () if is("MGET") => {
            if rest.is_empty() {
                return arity(replies, p, "mget");
            }
            replies.out(p).array(rest.len());
            for k in rest {
                match store.get(key_of(k)) {
                    Some(v) => replies.value(p, v),
                    None => replies.out(p).null(),
                }
                if replies.pending() >= super::FLUSH_AT {
                    replies.flush(wr, cfg.io_timeout).await?;
                }
            }
        }
        () if is("MSET") => mset(store, cfg, rest, replies, p),
        () if is("EXISTS") => {
            if rest.is_empty() {
                return arity(replies, p, "exists");
            }
            let n = rest.iter().filter(|k| store.exists(key_of(k))).count();
            replies.out(p).int(n as i64);
        }
        () if is("DEL") || is("UNLINK") => {
            if rest.is_empty() {
                return arity(replies, p, if is("DEL") { "del" } else { "unlink" });
            }
            let n = rest.iter().filter(|k| store.delete(key_of(k))).count();
            replies.out(p).int(n as i64);
        }
        () if is("DBSIZE") => replies.out(p).int(store.len() as i64),
        () if is("PING") => match rest {
            [] => replies.out(p).simple("PONG"),
            [m] => replies.out(p).bulk(m),
            _ => return arity(replies, p, "ping"),
        },
        () if is("ECHO") => {
            let [m] = rest else {
                return arity(replies, p, "echo");
            };
            replies.out(p).bulk(m);
        }
        () if is("AUTH") => auth(conn, cfg, rest, replies),
        () if is("HELLO") => hello(conn, cfg, rest, replies),
        () if is("SELECT") => match rest {
            [db] if &db[..] == b"0" => replies.out(p).simple("OK"),
            [_] => replies.out(p).error("ERR DB index is out of range"),
            _ => return arity(replies, p, "select"),
        },
        () if is("CLIENT") => client(conn, rest, replies),
        () if is("INFO") => {
            let text = info(store);
            replies.out(p).bulk(text.as_bytes());
        }
        () if is("COMMAND") => replies.out(p).array(0),
        () if is("QUIT") => {
            replies.out(p).simple("OK");
            conn.quit = true;
        }
        () => {
            let shown: String = name
                .iter()
                .take(ECHO_NAME)
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                .collect();
            replies
                .out(p)
                .error(&format!("ERR unknown command '{shown}'"));
        }
    }
    Ok(())
}

fn arity(replies: &mut Replies, p: Proto, cmd: &str) -> io::Result<()> {
    replies.out(p).error(&format!(
        "ERR wrong number of arguments for '{cmd}' command"
    ));
    Ok(())
}

/// `SET key value [NX|XX]`. TTL options are refused: values live until evicted.
fn set<B: RespStore + ?Sized>(
    store: &B,
    cfg: &RespConfig,
    rest: &[Bytes],
    replies: &mut Replies,
    p: Proto,
) {
    let [k, v, opts @ ..] = rest else {
        replies
            .out(p)
            .error("ERR wrong number of arguments for 'set' command");
        return;
    };
    let (mut nx, mut xx) = (false, false);
    for o in opts {
        match o.to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" | b"KEEPTTL" => {
                replies
                    .out(p)
                    .error("ERR TTLs are not supported: pool values live until evicted");
                return;
            }
            _ => {
                replies.out(p).error("ERR syntax error");
                return;
            }
        }
    }
    if (nx && xx) || k.len() > MAX_KEY {
        replies.out(p).error(if nx && xx {
            "ERR syntax error"
        } else {
            "ERR key too long"
        });
        return;
    }
    let key = key_of(k);
    if (nx || xx) && store.exists(key) == nx {
        replies.out(p).null();
        return;
    }
    match store_value(store, cfg, key, v) {
        Ok(()) => replies.out(p).simple("OK"),
        Err(e) => replies.out(p).error(e),
    }
}

/// `MSET k v [k v ...]`: every value is checked before any is stored; not atomic after that (a
/// later value can find no room once earlier ones are in).
fn mset<B: RespStore + ?Sized>(
    store: &B,
    cfg: &RespConfig,
    rest: &[Bytes],
    replies: &mut Replies,
    p: Proto,
) {
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        replies
            .out(p)
            .error("ERR wrong number of arguments for 'mset' command");
        return;
    }
    let pairs = || rest.chunks_exact(2);
    if pairs().any(|kv| kv[0].len() > MAX_KEY || kv[1].len() > cfg.max_value) {
        replies.out(p).error("ERR key or value over the size limit");
        return;
    }
    for kv in pairs() {
        if let Err(e) = store_value(store, cfg, key_of(&kv[0]), &kv[1]) {
            replies.out(p).error(e);
            return;
        }
    }
    replies.out(p).simple("OK");
}

/// Stores `value`, replacing a present value (Redis `SET` semantics over a store whose puts keep
/// the first value of a content-addressed key).
fn store_value<B: RespStore + ?Sized>(
    store: &B,
    cfg: &RespConfig,
    key: crate::BlockKey,
    value: &[u8],
) -> Result<(), &'static str> {
    if value.len() > cfg.max_value {
        return Err("ERR value is larger than the pool's max-value");
    }
    let mut status = store.put(key, value);
    if status == PutStatus::Exists {
        store.delete(key);
        status = store.put(key, value);
    }
    match status {
        PutStatus::Stored | PutStatus::Exists => Ok(()),
        PutStatus::TooLarge => Err("ERR value is larger than the pool's max-value"),
        PutStatus::NoSpace => Err("OOM no room in the pool: everything evictable is pinned"),
    }
}

/// Whether `password` is the token (constant time in the token's bytes).
fn token_ok(cfg: &RespConfig, password: &[u8]) -> bool {
    cfg.token
        .as_ref()
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(password)))
}

/// `AUTH [username] password`: the username is ignored, the password is the server's token.
fn auth(conn: &mut Conn, cfg: &RespConfig, rest: &[Bytes], replies: &mut Replies) {
    let p = conn.proto;
    let password = match rest {
        [pw] | [_, pw] => pw,
        _ => {
            replies
                .out(p)
                .error("ERR wrong number of arguments for 'auth' command");
            return;
        }
    };
    if cfg.token.is_none() {
        replies
            .out(p)
            .error("ERR AUTH called without any password configured for the default user");
    } else if token_ok(cfg, password) {
        conn.authed = true;
        replies.out(p).simple("OK");
    } else {
        replies
            .out(p)
            .error("WRONGPASS invalid username-password pair or user is disabled.");
    }
}

/// `HELLO [2|3 [AUTH user pass] [SETNAME name]]`: switches the reply protocol.
fn hello(conn: &mut Conn, cfg: &RespConfig, rest: &[Bytes], replies: &mut Replies) {
    let p = conn.proto;
    let mut proto = p;
    let mut creds = None;
    let mut name = None;
    if let Some((ver, mut opts)) = rest.split_first() {
        proto = match &ver[..] {
            b"2" => Proto::Resp2,
            b"3" => Proto::Resp3,
            _ => {
                replies.out(p).error("NOPROTO unsupported protocol version");
                return;
            }
        };
        while let Some((o, tail)) = opts.split_first() {
            match (o.to_ascii_uppercase().as_slice(), tail) {
                (b"AUTH", [_user, pass, more @ ..]) => {
                    creds = Some(pass);
                    opts = more;
                }
                (b"SETNAME", [n, more @ ..]) if n.len() <= MAX_CLIENT_NAME => {
                    name = Some(n.clone());
                    opts = more;
                }
                _ => {
                    replies.out(p).error("ERR syntax error in HELLO option");
                    return;
                }
            }
        }
    }
    if let Some(pass) = creds {
        if !token_ok(cfg, pass) {
            replies
                .out(p)
                .error("WRONGPASS invalid username-password pair or user is disabled.");
            return;
        }
        conn.authed = true;
    }
    if !conn.authed {
        replies.out(p).error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used",
        );
        return;
    }
    conn.proto = proto;
    if name.is_some() {
        conn.name = name;
    }
    let mut out = replies.out(proto);
    out.map(7);
    out.bulk(b"server");
    out.bulk(b"brix-kvcache");
    out.bulk(b"version");
    out.bulk(COMPAT_VERSION.as_bytes());
    out.bulk(b"proto");
    out.int(if proto == Proto::Resp3 { 3 } else { 2 });
    out.bulk(b"id");
    out.int(conn.id as i64);
    out.bulk(b"mode");
    out.bulk(b"standalone");
    out.bulk(b"role");
    out.bulk(b"master");
    out.bulk(b"modules");
    out.array(0);
}

/// `CLIENT SETNAME|GETNAME|SETINFO|ID`.
fn client(conn: &mut Conn, rest: &[Bytes], replies: &mut Replies) {
    let p = conn.proto;
    let Some((sub, args)) = rest.split_first() else {
        replies
            .out(p)
            .error("ERR wrong number of arguments for 'client' command");
        return;
    };
    match (sub.to_ascii_uppercase().as_slice(), args) {
        (b"SETNAME", [n]) if n.len() <= MAX_CLIENT_NAME => {
            conn.name = Some(n.clone());
            replies.out(p).simple("OK");
        }
        (b"GETNAME", []) => match conn.name.clone() {
            Some(n) => replies.out(p).bulk(&n),
            None => replies.out(p).null(),
        },
        (b"SETINFO", [_attr, _value]) => replies.out(p).simple("OK"),
        (b"ID", []) => replies.out(p).int(conn.id as i64),
        _ => replies
            .out(p)
            .error("ERR unknown or malformed CLIENT subcommand"),
    }
}

/// The `INFO` text: Redis's `# Section` / `field:value` lines.
fn info<B: RespStore + ?Sized>(store: &B) -> String {
    let mut s = format!(
        "# Server\r\nredis_version:{COMPAT_VERSION}\r\nredis_mode:standalone\r\nbrix_kvcache:1\r\n"
    );
    s.push_str("# Stats\r\n");
    for (k, v) in store.info() {
        s.push_str(&format!("{k}:{v}\r\n"));
    }
    s.push_str(&format!(
        "# Keyspace\r\ndb0:keys={},expires=0,avg_ttl=0\r\n",
        store.len()
    ));
    s
}
