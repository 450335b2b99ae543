#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cas_core::fuzzing::check_manifest_parse(data));
