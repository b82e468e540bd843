//! A tiny, valid PEFT LoRA adapter on disk (`adapter_config.json` plus a hand-written
//! `adapter_model.safetensors`), for tests that load adapters without building real ones.

use std::path::Path;

/// Writes an adapter of rank `r` for `base` into `dir` (created); weights are `bytes` zeros.
pub fn write_adapter(dir: &Path, r: u32, base: &str, bytes: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let config = format!(
        r#"{{"peft_type":"LORA","r":{r},"lora_alpha":{},"target_modules":["q_proj","k_proj","v_proj","o_proj"],"base_model_name_or_path":"{base}","bias":"none","task_type":"CAUSAL_LM"}}"#,
        2 * r
    );
    std::fs::write(dir.join("adapter_config.json"), config)?;
    // safetensors: u64 little-endian header length, the JSON header, then the data.
    let n = bytes / 2;
    let header = format!(
        r#"{{"base_model.model.layers.0.self_attn.q_proj.lora_A.weight":{{"dtype":"BF16","shape":[{r},{}],"data_offsets":[0,{}]}}}}"#,
        n / r.max(1) as usize,
        n / r.max(1) as usize * r as usize * 2
    );
    let data_len = n / r.max(1) as usize * r as usize * 2;
    let mut file = Vec::with_capacity(8 + header.len() + data_len);
    file.extend_from_slice(&(header.len() as u64).to_le_bytes());
    file.extend_from_slice(header.as_bytes());
    file.resize(file.len() + data_len, 0);
    std::fs::write(dir.join("adapter_model.safetensors"), file)
}
