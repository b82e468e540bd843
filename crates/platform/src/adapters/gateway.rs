//! The gateway as the controller's [`AdapterGateway`].

use std::collections::BTreeMap;

use brix_gateway::{AdapterRoute, GatewayHandle};

use super::AdapterGateway;

impl AdapterGateway for GatewayHandle {
    fn set_adapter_routes(&self, routes: Vec<(String, String, bool)>) {
        self.set_adapters(
            routes
                .into_iter()
                .map(|(name, base_model, pending)| AdapterRoute {
                    name,
                    base_model,
                    pending,
                })
                .collect(),
        );
    }

    fn set_pod_adapters(&self, address: &str, adapters: Vec<String>) {
        GatewayHandle::set_pod_adapters(self, address, adapters);
    }

    fn set_adapter_draining(&self, address: &str, adapter: &str, draining: bool) {
        GatewayHandle::set_adapter_draining(self, address, adapter, draining);
    }

    fn adapter_in_flight(&self, address: &str, adapter: &str) -> u32 {
        GatewayHandle::adapter_in_flight(self, address, adapter)
    }

    fn adapter_rps(&self) -> BTreeMap<String, f64> {
        GatewayHandle::adapter_rps(self)
    }
}
