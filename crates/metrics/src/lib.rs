//! Engine metric vocabulary: rules, as data, that re-export vLLM and SGLang series under one set of engine-neutral names; pure
