//! The node's gRPC server: health, reflection, `herald.v1.Registrations`, `Peer` and
//! `Admin`, behind the guard, with explicit message sizes and, with `[grpc.tls]`, TLS.

use std::sync::Arc;
use std::time::Duration;

use herald_proto::v1::admin_server::AdminServer;
use herald_proto::v1::peer_server::PeerServer;
use herald_proto::v1::registrations_server::RegistrationsServer;

use super::NodeError;
use crate::api::{GuardLayer, RegistrationsApi};
use crate::config::Config;
use crate::homes::{AdminHomes, Homes, PeerHomes};
use crate::metrics::Metrics;

/// Longest a TLS handshake on the gRPC listener may take.
const GRPC_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC server's routes, every one behind the guard.
pub(super) type GrpcRoutes = tonic::transport::server::Router<
    tower::layer::util::Stack<GuardLayer, tower::layer::util::Identity>,
>;

/// Largest request each service decodes: registration calls carry a few ids and a device
/// token; a peer call carries at most one parsed EWS request, which is smaller than its body.
const REGISTRATIONS_MAX_MESSAGE: usize = 16 * 1024;
const ADMIN_MAX_MESSAGE: usize = 4 * 1024;
/// Health checks and reflection, open to anyone who reaches the port: a service name.
const OPEN_MAX_MESSAGE: usize = 4 * 1024;
/// Largest answer each service encodes (a device's registrations, a cluster's status).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// The gRPC services: health, reflection, `herald.v1.Registrations`, `Peer` and `Admin`,
/// behind the guard (credentials and rates before a message is decoded) and with explicit
/// message sizes.
pub(super) fn grpc_router(
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    homes: &Arc<Homes>,
    config: &Config,
    guard: GuardLayer,
    metrics: &Arc<Metrics>,
) -> Result<GrpcRoutes, NodeError> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(herald_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NodeError::Reflection(e.to_string()))?;
    let api = RegistrationsApi::new(
        homes.clone(),
        config.cluster.regions.clone(),
        metrics.clone(),
    );
    let peer_max_message = 2 * config.gateway.max_body + 64 * 1024;
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &config.grpc.tls {
        let tls = tls
            .server()
            .map_err(|e| NodeError::Tls(e.to_string()))?
            .timeout(GRPC_HANDSHAKE_TIMEOUT);
        server = server
            .tls_config(tls)
            .map_err(|e| NodeError::Tls(format!("grpc.tls: {e}")))?;
    }
    Ok(server
        .layer(guard)
        .add_service(health.max_decoding_message_size(OPEN_MAX_MESSAGE))
        .add_service(reflection.max_decoding_message_size(OPEN_MAX_MESSAGE))
        .add_service(
            RegistrationsServer::new(api)
                .max_decoding_message_size(REGISTRATIONS_MAX_MESSAGE)
                .max_encoding_message_size(MAX_ANSWER),
        )
        .add_service(
            PeerServer::new(PeerHomes::new(homes.clone()))
                .max_decoding_message_size(peer_max_message)
                .max_encoding_message_size(MAX_ANSWER),
        )
        .add_service(
            AdminServer::new(AdminHomes::new(homes.clone()))
                .max_decoding_message_size(ADMIN_MAX_MESSAGE)
                .max_encoding_message_size(MAX_ANSWER),
        ))
}
