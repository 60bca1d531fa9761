"""Providers make nodes (VMs or network namespaces); they know nothing of phases."""
