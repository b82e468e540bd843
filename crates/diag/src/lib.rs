//! Accelerator diagnostics through NVML: driver, card count, PCIe link, ECC, retired pages, row remapping, NVLink; one verdict per GPU
