#include "paging.h"

#define PAGE_2M 0x200000u
#define TOP_IDENTITY 0xffc00000u /* from here up: identity (IOAPIC, LAPIC; the guest uses neither) */
#define PDE_PRESENT 0x1u
#define PDE_WRITE 0x2u
#define PDE_LARGE 0x80u /* PS: a 2 MiB page */
#define CR0_PG 0x80000000u
#define CR4_PAE 0x20u

/* PAE: 4 page-directory-pointer entries, each a page directory of 512 2 MiB pages: 4 GiB of virtual space. */
static uint64_t pdpt[4] __attribute__((aligned(32)));
static uint64_t page_directory[4 * 512] __attribute__((aligned(4096)));

uint32_t paging_map_high_ram(uint32_t low_end, uint64_t high_bytes) {
  /* Low RAM as the loader reports it can end a little below QEMU's split (the firmware's reserved top); the
   * window starts at the next 2 MiB, the split itself, and the reserved bit below it stays identity mapped. */
  const uint32_t window = (low_end + PAGE_2M - 1u) & ~(PAGE_2M - 1u);
  if (high_bytes < PAGE_2M || low_end == 0 || window >= TOP_IDENTITY) return low_end;
  uint64_t room = TOP_IDENTITY - window;
  uint64_t mapped = (high_bytes < room ? high_bytes : room) & ~(uint64_t)(PAGE_2M - 1u);
  for (uint32_t i = 0; i < 4u * 512u; ++i) {
    uint64_t virt = (uint64_t)i * PAGE_2M;
    uint64_t phys = virt >= window && virt < window + mapped ? virt - window + (1ull << 32) : virt;
    page_directory[i] = phys | PDE_PRESENT | PDE_WRITE | PDE_LARGE;
  }
  for (uint32_t i = 0; i < 4u; ++i) pdpt[i] = (uint32_t)(uintptr_t)&page_directory[i * 512u] | PDE_PRESENT;
  uint32_t cr;
  __asm__ volatile("mov %%cr4, %0" : "=r"(cr));
  __asm__ volatile("mov %0, %%cr4" : : "r"(cr | CR4_PAE) : "memory");
  __asm__ volatile("mov %0, %%cr3" : : "r"((uint32_t)(uintptr_t)pdpt) : "memory");
  __asm__ volatile("mov %%cr0, %0" : "=r"(cr));
  __asm__ volatile("mov %0, %%cr0" : : "r"(cr | CR0_PG) : "memory");
  return window + (uint32_t)mapped;
}
