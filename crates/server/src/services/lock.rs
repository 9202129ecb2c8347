//! etcd's `Lock` service (`v3lockpb.Lock`): clientv3's `concurrency.Mutex`, run by the server
//! for its caller as etcd 3.4's `v3lock` runs it.
//!
//! A lock `name` is held by the oldest key under `name/`; each locker puts the key
//! `name/<lease in hex>` with its lease and waits until every older key is deleted.

use tonic::{Request, Response, Status};

use super::Ctx;
use super::concurrency::{
    Client, OnCancel, created_at, first_created, first_kv, get_key, get_op, prefix_of, put_op,
    session_key,
};
use crate::proto::etcdserverpb as pb;
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

/// The Lock service.
#[derive(Debug, Clone)]
pub struct LockService {
    client: Client,
}

impl LockService {
    /// A Lock service over the context's node.
    pub fn new(ctx: Ctx) -> LockService {
        LockService {
            client: Client::new(ctx),
        }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let r = request.into_inner();
        let lease = self.client.session(r.lease).await?;
        let prefix = prefix_of(&r.name);
        let key = session_key(&prefix, lease);
        // Join the waiters unless this lease already did (then its key is reused), and read
        // the holder, to take an uncontended lock in one round.
        let txn = pb::TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![
                put_op(&key, Vec::new(), lease),
                get_op(first_created(&prefix)),
            ],
            failure: vec![get_op(get_key(&key)), get_op(first_created(&prefix))],
        };
        let resp = self.client.txn(txn).await?;
        let header = resp.header.unwrap_or_default();
        let my_rev = if resp.succeeded {
            header.revision
        } else {
            first_kv(&resp, 0)
                .map(|kv| kv.create_revision)
                .ok_or_else(|| Status::unknown("etcdserver: lock key not found"))?
        };
        if first_kv(&resp, 1).is_none_or(|owner| owner.create_revision == my_rev) {
            return Ok(Response::new(LockResponse {
                header: Some(header),
                key,
            }));
        }
        // Wait for the older waiters; give the place up if the wait fails or is cancelled.
        let client = self.client.clone();
        let mine = key.clone();
        let unlock = OnCancel::new(async move {
            if let Err(e) = client.delete(mine).await {
                tracing::debug!(error = %e, "cannot delete an abandoned lock key");
            }
        });
        match self.client.wait_deletes(&prefix, my_rev - 1).await {
            Ok(header) => {
                unlock.disarm();
                Ok(Response::new(LockResponse {
                    header: Some(header),
                    key,
                }))
            }
            Err(e) => {
                unlock.run().await;
                Err(e)
            }
        }
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let resp = self.client.delete(request.into_inner().key).await?;
        Ok(Response::new(UnlockResponse {
            header: resp.header,
        }))
    }
}
