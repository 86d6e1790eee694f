//! With the `grpc` feature: compiles the vendored KServe v2 .proto into the tonic service
//! (protox parses it in Rust: no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "grpc")]
    {
        const PROTO: &str = "proto/grpc_predict_v2.proto";
        println!("cargo:rerun-if-changed={PROTO}");
        let fds = protox::compile([PROTO], ["proto"])?;
        tonic_prost_build::configure()
            .build_server(true)
            .build_client(false)
            .build_transport(false)
            .compile_fds(fds)?;
    }
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
}
