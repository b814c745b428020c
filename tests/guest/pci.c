#include "pci.h"

#include "io.h"
#include "serial.h"

#define PCI_ADDR 0xcf8
#define PCI_DATA 0xcfc
#define PCI_COMMAND 0x04
#define PCI_COMMAND_IO 0x1u
#define PCI_COMMAND_MASTER 0x4u
#define PCI_HEADER_TYPE 0x0c /* byte 2 of the dword at 0x0c */
#define PCI_BAR0 0x10

static uint32_t address(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t offset) {
  return 0x80000000u | (uint32_t)bus << 16 | (uint32_t)dev << 11 | (uint32_t)fn << 8 | (offset & 0xfcu);
}

uint32_t pci_read32(const struct pci_device* d, uint8_t offset) {
  outl(PCI_ADDR, address(d->bus, d->dev, d->fn, offset));
  return inl(PCI_DATA);
}

void pci_write32(const struct pci_device* d, uint8_t offset, uint32_t value) {
  outl(PCI_ADDR, address(d->bus, d->dev, d->fn, offset));
  outl(PCI_DATA, value);
}

int pci_find(uint16_t vendor, uint16_t device, struct pci_device* out) {
  for (uint8_t dev = 0; dev < 32; ++dev) {
    for (uint8_t fn = 0; fn < 8; ++fn) {
      struct pci_device d = {0, dev, fn, 0};
      uint32_t id = pci_read32(&d, 0);
      if ((id & 0xffffu) == 0xffffu) {
        if (fn == 0) break; /* no device in this slot */
        continue;
      }
      if (fn == 0 && !(pci_read32(&d, PCI_HEADER_TYPE) & 0x800000u)) fn = 7; /* single-function: done after this */
      if ((id & 0xffffu) != vendor || id >> 16 != device) continue;
      uint32_t bar0 = pci_read32(&d, PCI_BAR0);
      if (!(bar0 & 1u) || (bar0 & ~3u) == 0) {
        serial_printf("tandem-guest pci 00:%x.%u: %x:%x has no assigned I/O BAR0 (%x)\n", (uint32_t)dev, (uint32_t)fn,
                      (uint32_t)vendor, (uint32_t)device, bar0);
        return 0;
      }
      d.io_base = (uint16_t)(bar0 & 0xfffcu);
      uint32_t cmd = pci_read32(&d, PCI_COMMAND);
      pci_write32(&d, PCI_COMMAND, (cmd & 0xffffu) | PCI_COMMAND_IO | PCI_COMMAND_MASTER);
      *out = d;
      return 1;
    }
  }
  return 0;
}
