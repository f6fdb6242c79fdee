//! Compiles `herald/v1/*.proto` with the vendored protoc, so no system install is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let includes = [PathBuf::from("."), include];
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos: [PathBuf; 3] = [
        "herald/v1/registrations.proto".into(),
        "herald/v1/admin.proto".into(),
        "herald/v1/peer.proto".into(),
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("herald_v1_descriptor.bin"))
        .compile_with_config(config, &protos, &includes)?;
    Ok(())
}
