//! The `herald.v1` protocol: the protobuf files under `herald/v1/` and the tonic/prost code
//! generated from them. It holds messages and service definitions only — no behaviour, and
//! it knows nothing of the crates that implement or call the services.

#![forbid(unsafe_code)]

/// Generated code for the `herald.v1` package.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]
pub mod v1 {
    tonic::include_proto!("herald.v1");

    /// The encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("herald_v1_descriptor");
}
