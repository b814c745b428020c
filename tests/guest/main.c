/* tandem test guest: a freestanding multiboot kernel that dirties RAM pages in a checkable pattern and reports
 * on COM1. Command line (multiboot, from QEMU -append): pages=N (default 4096), rate=R pages/s (default 0 =
 * as fast as possible), fill=sparse|full|data (default sparse: see guest_layout.h), rounds=N (0 = forever:
 * stop dirtying after N rounds and idle), selftest=break (corrupt one page
 * on purpose, to prove the checker fires), panic_after=S (crash on purpose S seconds after boot, reported on
 * the pvpanic port), ip=A.B.C.D (default 10.0.0.2) and port=P (default 7): the UDP request service's address,
 * used only when QEMU gives the guest a virtio-net device (see README.md). */
#include <stdint.h>

#include "guest_layout.h"
#include "paging.h"
#include "serial.h"
#include "service.h"
#include "timer.h"
#include "workload.h"

#define MB_LOADER_MAGIC 0x2badb002u
#define MBI_FLAG_MEM 0x001u
#define MBI_FLAG_CMDLINE 0x004u
#define MBI_FLAG_MMAP 0x040u
#define MMAP_RAM 1u

struct multiboot_info {
  uint32_t flags;
  uint32_t mem_lower; /* KiB below 1 MiB */
  uint32_t mem_upper; /* KiB from 1 MiB up to the first hole */
  uint32_t boot_device;
  uint32_t cmdline;
  uint32_t mods_count, mods_addr, syms[4];
  uint32_t mmap_length; /* the BIOS memory map: entries of struct mmap_entry */
  uint32_t mmap_addr;
};

struct mmap_entry {
  uint32_t size; /* of the rest of the entry */
  uint64_t base, length;
  uint32_t type;
} __attribute__((packed));

/* RAM at and above 4 GiB in the loader's memory map (QEMU: one range from 4 GiB), 0 without a map. */
static uint64_t high_ram_bytes(const struct multiboot_info* mbi) {
  if (!(mbi->flags & MBI_FLAG_MMAP)) return 0;
  uint64_t bytes = 0;
  for (uint32_t at = mbi->mmap_addr; at < mbi->mmap_addr + mbi->mmap_length;) {
    const struct mmap_entry* e = (const struct mmap_entry*)(uintptr_t)at;
    if (e->type == MMAP_RAM && e->base >= (1ull << 32)) bytes += e->length;
    at += e->size + 4u;
  }
  return bytes;
}

extern char __image_end[];

static char cmdline[512];

/* Value of `key=` in the command line, or 0. Tokens are separated by spaces; the first is the kernel path. */
static const char* find_arg(const char* key) {
  for (const char* p = cmdline; *p;) {
    while (*p == ' ') ++p;
    const char* k = key;
    const char* q = p;
    while (*k && *q == *k) ++q, ++k;
    if (!*k && (p == cmdline || p[-1] == ' ')) return q;
    while (*p && *p != ' ') ++p;
  }
  return 0;
}

static uint32_t arg_u32(const char* key, uint32_t def) {
  const char* v = find_arg(key);
  if (!v || *v < '0' || *v > '9') return def;
  uint32_t n = 0;
  for (; *v >= '0' && *v <= '9'; ++v) {
    uint32_t d = (uint32_t)(*v - '0');
    if (n > (0xffffffffu - d) / 10u) return 0xffffffffu;
    n = n * 10u + d;
  }
  return n;
}

/* Dotted quad in host order, or `def` when absent or malformed. */
static uint32_t arg_ipv4(const char* key, uint32_t def) {
  const char* v = find_arg(key);
  if (!v) return def;
  uint32_t ip = 0;
  for (int part = 0; part < 4; ++part) {
    if (*v < '0' || *v > '9') return def;
    uint32_t n = 0;
    while (*v >= '0' && *v <= '9' && n <= 255u) n = n * 10u + (uint32_t)(*v++ - '0');
    if (n > 255u || (part < 3 && *v++ != '.')) return def;
    ip = ip << 8 | n;
  }
  return *v == ' ' || *v == '\0' ? ip : def;
}

static int arg_is(const char* key, const char* want) {
  const char* v = find_arg(key);
  if (!v) return 0;
  while (*want && *v == *want) ++v, ++want;
  return !*want && (*v == ' ' || *v == '\0');
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
  serial_init();
  uint64_t ram_end = 0, high_ram = 0;
  if (magic == MB_LOADER_MAGIC) {
    if ((mbi->flags & MBI_FLAG_CMDLINE) && mbi->cmdline) {
      const char* src = (const char*)(uintptr_t)mbi->cmdline;
      uint32_t n = 0;
      while (n + 1 < sizeof cmdline && src[n]) cmdline[n] = src[n], ++n;
      cmdline[n] = '\0';
    }
    if (mbi->flags & MBI_FLAG_MEM) ram_end = 0x100000ull + (uint64_t)mbi->mem_upper * 1024u;
    high_ram = high_ram_bytes(mbi);
  } else {
    serial_printf("tandem-guest: not started by a multiboot loader (eax=%x)\n", magic);
  }

  struct workload_config cfg;
  cfg.pages = arg_u32("pages=", 4096);
  cfg.rate = arg_u32("rate=", 0);
  cfg.fill = arg_is("fill=", "full")   ? TANDEM_GUEST_FILL_FULL
             : arg_is("fill=", "data") ? TANDEM_GUEST_FILL_DATA
                                       : TANDEM_GUEST_FILL_SPARSE;
  cfg.rounds = arg_u32("rounds=", 0);
  cfg.selftest_break = arg_is("selftest=", "break");
  cfg.panic_after_s = arg_u32("panic_after=", 0);
  if (cfg.pages == 0) cfg.pages = 1;
  if (ram_end == 0) ram_end = 32ull << 20; /* no memory info: assume a small VM */
  /* The multiboot info and command line sit right after the image; we have copied what we need, but make
   * sure the pages cannot overlap the image itself. */
  /* More pages than low RAM holds: RAM above 4 GiB, if any, is mapped right after it (paging.h). */
  if (high_ram && (uint64_t)cfg.pages * TANDEM_GUEST_PAGE_SIZE > ram_end - TANDEM_GUEST_PAGES_BASE) {
    uint32_t low_end = (uint32_t)ram_end;
    ram_end = paging_map_high_ram(low_end, high_ram);
    uint32_t window = (low_end + 0x1fffffu) & ~0x1fffffu;
    if (ram_end > low_end)
      serial_printf("tandem-guest paging: %u MiB of RAM above 4 GiB mapped from %x (= RAM file offset)\n",
                    (uint32_t)((ram_end - window) >> 20), window);
  }
  uint64_t base = TANDEM_GUEST_PAGES_BASE;
  uint64_t max_pages = ram_end > base ? (ram_end - base) / TANDEM_GUEST_PAGE_SIZE : 0;
  if ((uintptr_t)__image_end > TANDEM_GUEST_PAGES_BASE) max_pages = 0;
  if (max_pages == 0) {
    serial_printf("tandem-guest: no RAM above 2 MiB (ram end %x)\n", (uint32_t)ram_end);
    for (;;) __asm__ volatile("cli; hlt");
  }
  if (cfg.pages > max_pages) {
    serial_printf("tandem-guest: pages=%u does not fit in RAM, using %u\n", cfg.pages, (uint32_t)max_pages);
    cfg.pages = (uint32_t)max_pages;
  }

  timer_init();
  serial_printf("tandem-guest boot pages=%u rate=%u\n", cfg.pages, cfg.rate);
  serial_printf("tandem-guest info: tsc_khz=%u ram_kib=%u base=%x fill=%s selftest=%s\n", timer_tsc_khz(),
                (uint32_t)(ram_end >> 10), TANDEM_GUEST_PAGES_BASE, cfg.fill == TANDEM_GUEST_FILL_FULL   ? "full"
                : cfg.fill == TANDEM_GUEST_FILL_DATA ? "data"
                                                     : "sparse",
                cfg.selftest_break ? "break" : "off");
  struct service_config service;
  service.ip = arg_ipv4("ip=", 0x0a000002u);
  uint32_t port = arg_u32("port=", 7);
  service.port = port >= 1 && port <= 0xffffu ? (uint16_t)port : 7;
  service_init(&service);
  workload_run(&cfg);
}
