"""Real-hypervisor tier: virtq against a private libvirtd with the QEMU driver (TCG)."""
