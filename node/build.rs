//! Generates the gRPC APIs from `proto/` with protox (a protobuf compiler in Rust), so
//! building needs no `protoc` on the machine: the admin API (the node-to-node mesh API is
//! generated in `domicile-engine`, whose peer transport uses it).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/domicile/admin/v1/admin.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
