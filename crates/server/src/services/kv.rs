//! etcd's `KV` service: Range, Put, DeleteRange, Txn, Compact.

use tonic::{Request, Response, Status};

use super::{Ctx, check_size, header};
use crate::convert;
use crate::error::to_status;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::kv_server::Kv;

/// The KV service.
#[derive(Debug, Clone)]
pub struct KvService {
    ctx: Ctx,
}

impl KvService {
    /// A KV service over the context's node.
    pub fn new(ctx: Ctx) -> KvService {
        KvService { ctx }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let r = request.into_inner();
        convert::check_range(&r)?;
        let resp = self
            .ctx
            .node
            .range(convert::range_request(&r), r.serializable)
            .await
            .map_err(to_status)?;
        let mut out = convert::range_response(&r, resp.body);
        out.header = Some(header(resp.header));
        Ok(Response::new(out))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let r = request.into_inner();
        convert::check_put(&r)?;
        check_size(&self.ctx, &r)?;
        let resp = self
            .ctx
            .node
            .put(convert::put_request(r))
            .await
            .map_err(to_status)?;
        let mut out = convert::put_response(resp.body);
        out.header = Some(header(resp.header));
        Ok(Response::new(out))
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let r = request.into_inner();
        convert::check_delete(&r)?;
        let resp = self
            .ctx
            .node
            .delete_range(convert::delete_request(r))
            .await
            .map_err(to_status)?;
        let mut out = convert::delete_response(resp.body);
        out.header = Some(header(resp.header));
        Ok(Response::new(out))
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let r = request.into_inner();
        convert::check_txn(&r, self.ctx.max_txn_ops)?;
        let txn = convert::txn_request(&r)?;
        // etcd refuses duplicate keys in the gRPC layer, before the size check at proposal.
        mvcc::check_txn(&txn).map_err(|e| to_status(e.into()))?;
        check_size(&self.ctx, &r)?;
        let resp = self.ctx.node.txn(txn).await.map_err(to_status)?;
        Ok(Response::new(convert::txn_response(
            &r,
            resp.body,
            &header(resp.header),
        )))
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let r = request.into_inner();
        let resp = self
            .ctx
            .node
            .compact(r.revision, r.physical)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CompactionResponse {
            header: Some(header(resp.header)),
        }))
    }
}
