/* The request service: a counter of requests served over the NIC (net.c), each recorded on the disk (disk.c)
 * before it is answered, kept in the service page (guest_layout.h) and checked against the disk. */
#ifndef TANDEM_TESTS_GUEST_SERVICE_H
#define TANDEM_TESTS_GUEST_SERVICE_H

#include <stdint.h>

#include "net.h"

struct service_config {
  uint32_t ip;   /* host order */
  uint16_t port; /* UDP */
};

/* Looks for the NIC and the disk; with a disk, takes the counter from its last record. Prints what it found;
 * prints nothing when there is neither (the guest then behaves as it always did). */
void service_init(const struct service_config* cfg);

/* From the workload's inner loop: answer requests that arrived (cheap when none did). */
static inline void service_poll(void) {
  if (__builtin_expect(net_rx_pending(), 0)) net_poll();
}

/* About every 250 ms, between requests: checks the counter against the disk's last record and prints
 * "reqs=<n> disk=<d> ok" (nothing without NIC and disk). */
void service_status(void);

#endif
