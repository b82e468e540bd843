//! A stand-in libnvidia-ml that answers the NVML calls Brix makes from AIBrix's GPU mock TOML, so every failure can be produced without broken hardware
