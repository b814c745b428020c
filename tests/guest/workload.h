/* The dirty-page workload and its invariant checker (see guest_layout.h for the page format). */
#ifndef TANDEM_TESTS_GUEST_WORKLOAD_H
#define TANDEM_TESTS_GUEST_WORKLOAD_H

#include <stdint.h>

struct workload_config {
  uint32_t pages;          /* number of 4 KiB pages rewritten each round */
  uint32_t rate;           /* pages dirtied per second; 0 = as fast as possible */
  uint32_t fill;           /* TANDEM_GUEST_FILL_*: header and tail words only, whole pages with the counter, or
                              realistic contents (guest_layout.h) */
  uint32_t rounds;         /* 0: forever; else stop dirtying after this many rounds and idle (status lines and
                              checks go on), so that a live migration converges even where every round takes
                              long (TCG) */
  int selftest_break;      /* deliberately corrupt one page ~1.5 s after boot to prove the checker fires */
  uint32_t panic_after_s;  /* 0: never; else crash on purpose this many seconds after boot: report it to the
                              hypervisor on the pvpanic port (0x505), like Linux's pvpanic driver, and halt */
};

/* Never returns: rounds (forever, or `rounds` of them and then idles), printing a status line about every 250 ms of wall time. */
void workload_run(const struct workload_config* cfg) __attribute__((noreturn));

#endif
