#![no_main]
//! libFuzzer entry for [`mfh_fuzz::embedding_file`]; see fuzz/README.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mfh_fuzz::embedding_file::run(mfh_fuzz::scratch("embedding_file"), data);
});
