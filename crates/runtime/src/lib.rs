//! The runtime sidecar beside one engine: adapter load and unload (direct or delegated with download), artifact download and list, health, standardised metrics
