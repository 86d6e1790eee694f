#![no_main]
//! libFuzzer entry for [`mfh_fuzz::row_parser`]; see fuzz/README.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mfh_fuzz::row_parser::run(mfh_fuzz::scratch("row_parser"), data);
});
