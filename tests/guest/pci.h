/* PCI configuration space through the legacy ports 0xCF8/0xCFC (q35 keeps them), bus 0 only: QEMU plugs
 * `-device ...` without bus= into the root bus. */
#ifndef TANDEM_TESTS_GUEST_PCI_H
#define TANDEM_TESTS_GUEST_PCI_H

#include <stdint.h>

struct pci_device {
  uint8_t bus, dev, fn;
  uint16_t io_base; /* BAR0 when it is an I/O BAR (what legacy virtio uses), else 0 */
};

uint32_t pci_read32(const struct pci_device* d, uint8_t offset);
void pci_write32(const struct pci_device* d, uint8_t offset, uint32_t value);

/* First function on bus 0 with this vendor and device id. Enables its I/O decoding and bus mastering (the
 * device DMAs into our rings). Returns 0 when there is none or its BAR0 is not an assigned I/O BAR. */
int pci_find(uint16_t vendor, uint16_t device, struct pci_device* out);

#endif
