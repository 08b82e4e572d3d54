//! The node's secret for the redactors' keyed hash: 32 random bytes made at first start
//! and kept in node storage, so tokens stay stable across restarts. It is never logged,
//! never sent to a peer and never given to a plugin (plugins only get HMACs computed
//! with it).

use std::sync::Arc;

use rand::RngCore;

use crate::storage::{StorageError, Store};

const KEY: &str = "secret/keyed-hash";
const SECRET_BYTES: usize = 32;

/// The stored secret, created (durably) if this node has none yet.
pub async fn load_or_create(store: &Store) -> Result<Arc<[u8]>, StorageError> {
    if let Some((_, secret)) = store.state_with_prefix(KEY)?.into_iter().next() {
        return Ok(Arc::from(secret));
    }
    let mut fresh = vec![0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut fresh);
    let secret = store
        .write(move |ctx| {
            // Another caller may have created it since the read above: keep theirs.
            if let Some(existing) = ctx.get_state(KEY)? {
                return Ok::<_, StorageError>(existing);
            }
            ctx.put_state(KEY.to_string(), fresh.clone());
            Ok(fresh)
        })
        .await?;
    Ok(Arc::from(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_secret_survives_a_restart_and_differs_between_nodes() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("a.redb")).expect("store");
        let first = load_or_create(&store).await.expect("secret");
        let closed = store.close_watch();
        drop(store);
        assert!(
            closed.wait(std::time::Duration::from_secs(5)),
            "store closes"
        );
        assert_eq!(first.len(), SECRET_BYTES);
        let store = Store::open(&dir.path().join("a.redb")).expect("reopen");
        assert_eq!(load_or_create(&store).await.expect("secret"), first);
        let other = Store::open(&dir.path().join("b.redb")).expect("store");
        assert_ne!(load_or_create(&other).await.expect("secret"), first);
    }
}
