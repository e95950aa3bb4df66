//! Model files: a CTranslate2 `model.bin` being converted and a ggml file being verified give
//! a `ModelError` for any bytes, never a panic or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextmark_engine::model::{read_ct2_variables, verify_ggml_reader};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let path = std::path::Path::new("fuzz.bin");
    if mode % 2 == 0 {
        let _ = read_ct2_variables(&mut &rest[..], path);
    } else {
        let _ = verify_ggml_reader(&mut &rest[..], rest.len() as u64, path);
    }
});
