//! Streaming safetensors loader: tensors from local files, S3-compatible storage or HTTP, overlapping download, parse and copy, in bounded memory
