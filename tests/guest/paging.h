/* RAM above 4 GiB for a guest that runs with 32-bit addresses. QEMU (pc and q35) puts guest RAM past the 32-bit
 * PCI hole above 4 GiB: a q35 guest of 2.75 GiB or more has 2 GiB below 4 GiB and the rest from 4 GiB on. */
#ifndef TANDEM_TESTS_GUEST_PAGING_H
#define TANDEM_TESTS_GUEST_PAGING_H

#include <stdint.h>

/* Maps RAM above 4 GiB (high_bytes of it) right after low RAM, which ends at low_end: with PAE paging and 2 MiB
 * pages, virtual [0, W) is identity and virtual [W, W + mapped) is physical [4 GiB, 4 GiB + mapped), W = low_end
 * rounded up to 2 MiB (QEMU's split: the loader reports low RAM without the firmware's reserved top). QEMU's RAM block holds low RAM and then high RAM, so a virtual address below the
 * returned end is also the offset in the VM's RAM file. The top 4 MiB (IOAPIC, LAPIC) stay identity mapped.
 * Returns the end of RAM in virtual addresses: low_end when there is nothing to map (paging stays off). */
uint32_t paging_map_high_ram(uint32_t low_end, uint64_t high_bytes);

#endif
