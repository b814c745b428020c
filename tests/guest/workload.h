/* The dirty-page workload and its invariant checker (see guest_layout.h for the page format). */
#ifndef TANDEM_TESTS_GUEST_WORKLOAD_H
#define TANDEM_TESTS_GUEST_WORKLOAD_H

#include <stdint.h>

struct workload_config {
  uint32_t pages;          /* number of 4 KiB pages rewritten each round */
  uint32_t rate;           /* pages dirtied per second; 0 = as fast as possible */
  int fill_full;           /* 1: fill whole pages with the counter; 0: header and tail words only */
  int selftest_break;      /* deliberately corrupt one page ~1.5 s after boot to prove the checker fires */
  uint32_t panic_after_s;  /* 0: never; else crash on purpose this many seconds after boot: report it to the
                              hypervisor on the pvpanic port (0x505), like Linux's pvpanic driver, and halt */
};

/* Never returns: rounds forever, printing a status line about every 250 ms of wall time. */
void workload_run(const struct workload_config* cfg) __attribute__((noreturn));

#endif
