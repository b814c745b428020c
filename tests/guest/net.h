/* virtio-net (legacy, polled) and just enough of a network stack for one UDP service: ARP replies for our
 * address, ICMP echo replies (so `ping` works through a TAP or veth), UDP datagrams to one port. */
#ifndef TANDEM_TESTS_GUEST_NET_H
#define TANDEM_TESTS_GUEST_NET_H

#include <stdint.h>

#include "virtio.h"

/* Handles one request datagram's payload; writes the reply payload to `reply` (at most `cap` bytes) and returns
 * its length (0: no reply). */
typedef uint32_t (*net_request_handler)(const uint8_t* payload, uint32_t len, char* reply, uint32_t cap);

struct net_config {
  uint32_t ip;   /* host order: 10.0.0.2 is 0x0a000002 */
  uint16_t port; /* UDP port of the service */
  net_request_handler handler;
};

/* Finds and starts the first virtio-net device. 0 when there is none (or it cannot be driven). */
int net_init(const struct net_config* cfg);

extern struct vq net_rx_queue;
/* A frame is waiting (a few instructions: the workload's inner loop asks this). */
static inline int net_rx_pending(void) { return vq_has_used(&net_rx_queue); }
/* Handles every frame received so far, replying to each request before the next is looked at. */
void net_poll(void);

#endif
