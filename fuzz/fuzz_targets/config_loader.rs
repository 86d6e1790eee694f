#![no_main]
//! libFuzzer entry for [`mfh_fuzz::config_loader`]; see fuzz/README.md.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = mfh_fuzz::config_loader::run(mfh_fuzz::scratch("config_loader"), data);
});
