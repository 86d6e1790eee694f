//! Times the two collectives of a training step in isolation, for the cost model in
//! docs/distributed.md: an all-reduce of `--floats` f32 (the fused dense gradients) and
//! an all-to-all-v of `--bytes` per rank split evenly over the ranks (ids, rows or row
//! gradients), each repeated and reported as median and min in microseconds.
//!
//! `mpirun -np 2 target/fastrel/examples/collectives [FLOATS] [BYTES] [REPEATS]`

#[cfg(feature = "mpi")]
fn main() {
    use mfh_distributed::{Comm, MpiComm};
    use std::time::Instant;
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: FLOATS BYTES REPEATS"))
        .collect();
    let floats = args.first().copied().unwrap_or(453_341);
    let bytes = args.get(1).copied().unwrap_or(112_000);
    let repeats = args.get(2).copied().unwrap_or(200);
    let mut comm = MpiComm::init().expect("MPI initialises");
    let size = comm.size();
    let mut buf = vec![1.0f32; floats];
    let per = bytes / 4 / size;
    let send = vec![0.5f32; per * size];
    let counts = vec![per; size];
    let mut reduce = Vec::new();
    let mut a2a = Vec::new();
    for _ in 0..repeats {
        comm.barrier();
        let t = Instant::now();
        comm.all_reduce_sum(&mut buf);
        reduce.push(t.elapsed().as_secs_f64() * 1e6);
        comm.barrier();
        let t = Instant::now();
        let _ = comm.all_to_all_v_f32(&send, &counts);
        a2a.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let stat = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0])
    };
    let (rm, rmin) = stat(&mut reduce);
    let (am, amin) = stat(&mut a2a);
    if comm.rank() == 0 {
        println!(
            "ranks {size}: all-reduce {floats} f32 ({} KiB): median {rm:.0} µs, min {rmin:.0} µs; all-to-all-v {} KiB per rank: median {am:.0} µs, min {amin:.0} µs",
            floats * 4 / 1024,
            per * size * 4 / 1024
        );
    }
}

#[cfg(not(feature = "mpi"))]
fn main() {
    eprintln!("build with --features mpi");
}
