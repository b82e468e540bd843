//! Redis protocol (RESP) subset on the pool's port — placeholder until the RESP module lands:
//! answers every RESP connection with one error and closes it.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::store::Store;

/// Serves one RESP connection whose first bytes (already read) are `first_bytes`.
pub async fn serve<S>(mut stream: S, store: Arc<Store>, first_bytes: Vec<u8>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _ = (store, first_bytes);
    stream.write_all(b"-ERR RESP is not built in yet\r\n").await
}
