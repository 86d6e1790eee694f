#![no_main]
//! libFuzzer entry for [`mfh_fuzz::model_dir`]; see fuzz/README.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mfh_fuzz::model_dir::run(mfh_fuzz::scratch("model_dir"), data);
});
