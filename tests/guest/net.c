#include "net.h"

#include "io.h"
#include "pci.h"
#include "serial.h"

#define VIRTIO_NET_F_MAC (1u << 5)
#define VNET_HDR 10u /* legacy header without mergeable buffers: flags, gso_type, hdr_len, gso_size, csum_* */
#define RX_BUFS 16u
#define BUF_SIZE 2048u
#define ETH_HDR 14u
#define ETH_MIN 60u /* frames shorter than this (without FCS) are padded */
#define ETHERTYPE_IPV4 0x0800u
#define ETHERTYPE_ARP 0x0806u
#define IP_HDR 20u
#define PROTO_ICMP 1u
#define PROTO_UDP 17u
#define UDP_HDR 8u

struct vq net_rx_queue;
static struct vq tx_queue;
static uint8_t rx_mem[VIRTQ_MEM_BYTES] __attribute__((aligned(4096)));
static uint8_t tx_mem[VIRTQ_MEM_BYTES] __attribute__((aligned(4096)));
static uint8_t rx_bufs[RX_BUFS][BUF_SIZE] __attribute__((aligned(16)));
static uint8_t tx_buf[BUF_SIZE] __attribute__((aligned(16)));
static uint8_t mac[6];
static struct net_config config;
static uint16_t ip_id;

static uint16_t get16(const uint8_t* p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t* p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put16(uint8_t* p, uint32_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void put32(uint8_t* p, uint32_t v) { put16(p, v >> 16), put16(p + 2, v); }
static void copy(uint8_t* dst, const uint8_t* src, uint32_t n) {
  while (n--) *dst++ = *src++;
}
static int same(const uint8_t* a, const uint8_t* b, uint32_t n) {
  while (n--)
    if (*a++ != *b++) return 0;
  return 1;
}

/* RFC 1071 sum, not yet folded or complemented, so pseudo header and data can be summed separately. */
static uint32_t sum16(const uint8_t* p, uint32_t n, uint32_t sum) {
  for (; n > 1; p += 2, n -= 2) sum += get16(p);
  if (n) sum += (uint32_t)p[0] << 8;
  return sum;
}
static uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffffu) + (sum >> 16);
  return (uint16_t)~sum;
}
static uint32_t pseudo_sum(const uint8_t* ip, uint32_t proto, uint32_t len) {
  return sum16(ip + 12, 8, 0) + proto + len; /* source and destination addresses */
}

static void send_frame(uint32_t len) {
  if (len < ETH_MIN) {
    for (uint32_t i = len; i < ETH_MIN; ++i) tx_buf[VNET_HDR + i] = 0;
    len = ETH_MIN;
  }
  volatile struct vring_desc* d = tx_queue.desc;
  d[0].addr = (uint32_t)(uintptr_t)tx_buf;
  d[0].len = VNET_HDR + len;
  d[0].flags = 0;
  d[0].next = 0;
  vq_submit(&tx_queue, 0);
  uint16_t head;
  uint32_t used_len;
  while (!vq_next_used(&tx_queue, &head, &used_len)) cpu_relax();
}

/* Starts a reply frame to the sender of `in`: Ethernet header (and the zero virtio-net header). */
static uint8_t* reply_frame(const uint8_t* in, uint32_t ethertype) {
  for (uint32_t i = 0; i < VNET_HDR; ++i) tx_buf[i] = 0;
  uint8_t* out = tx_buf + VNET_HDR;
  copy(out, in + 6, 6);
  copy(out + 6, mac, 6);
  put16(out + 12, ethertype);
  return out;
}

static void handle_arp(const uint8_t* f, uint32_t len) {
  const uint8_t* a = f + ETH_HDR;
  if (len < ETH_HDR + 28u || get16(a) != 1u || get16(a + 2) != ETHERTYPE_IPV4 || a[4] != 6u || a[5] != 4u) return;
  if (get16(a + 6) != 1u || get32(a + 24) != config.ip) return; /* only "who has <our address>" */
  uint8_t* o = reply_frame(f, ETHERTYPE_ARP) + ETH_HDR;
  put16(o, 1);
  put16(o + 2, ETHERTYPE_IPV4);
  o[4] = 6, o[5] = 4;
  put16(o + 6, 2); /* reply */
  copy(o + 8, mac, 6);
  put32(o + 14, config.ip);
  copy(o + 18, a + 8, 10); /* target: the asker's hardware and protocol address */
  send_frame(ETH_HDR + 28u);
}

/* IPv4 header of a reply to `ip` (addresses swapped), `payload` bytes after it; returns where they go. */
static uint8_t* reply_ip(const uint8_t* f, const uint8_t* ip, uint32_t proto, uint32_t payload) {
  uint8_t* o = reply_frame(f, ETHERTYPE_IPV4) + ETH_HDR;
  o[0] = 0x45, o[1] = 0;
  put16(o + 2, IP_HDR + payload);
  put16(o + 4, ++ip_id);
  put16(o + 6, 0x4000); /* don't fragment */
  o[8] = 64, o[9] = (uint8_t)proto;
  put16(o + 10, 0);
  put32(o + 12, config.ip);
  copy(o + 16, ip + 12, 4);
  put16(o + 10, fold(sum16(o, IP_HDR, 0)));
  return o + IP_HDR;
}

static void handle_icmp(const uint8_t* f, const uint8_t* ip, const uint8_t* m, uint32_t len) {
  if (len < 8u || m[0] != 8u || m[1] != 0u || fold(sum16(m, len, 0)) != 0) return; /* echo request, intact */
  if (len > BUF_SIZE - VNET_HDR - ETH_HDR - IP_HDR) return;
  uint8_t* o = reply_ip(f, ip, PROTO_ICMP, len);
  copy(o, m, len);
  o[0] = 0; /* echo reply */
  put16(o + 2, 0);
  put16(o + 2, fold(sum16(o, len, 0)));
  send_frame(ETH_HDR + IP_HDR + len);
}

static void handle_udp(const uint8_t* f, const uint8_t* ip, const uint8_t* u, uint32_t len) {
  if (len < UDP_HDR || get16(u + 4) < UDP_HDR || get16(u + 4) > len || get16(u + 2) != config.port) return;
  len = get16(u + 4);
  if (get16(u + 6) != 0 && fold(pseudo_sum(ip, PROTO_UDP, len) + sum16(u, len, 0)) != 0) return;
  char text[128];
  uint32_t n = config.handler(u + UDP_HDR, len - UDP_HDR, text, sizeof text);
  if (n == 0) return;
  uint8_t* o = reply_ip(f, ip, PROTO_UDP, UDP_HDR + n);
  put16(o, config.port);
  put16(o + 2, get16(u)); /* back to the sender's port */
  put16(o + 4, UDP_HDR + n);
  put16(o + 6, 0);
  copy(o + UDP_HDR, (const uint8_t*)text, n);
  uint16_t sum = fold(pseudo_sum(o - IP_HDR, PROTO_UDP, UDP_HDR + n) + sum16(o, UDP_HDR + n, 0));
  put16(o + 6, sum ? sum : 0xffffu); /* 0 would mean "no checksum" */
  send_frame(ETH_HDR + IP_HDR + UDP_HDR + n);
}

static void handle_ipv4(const uint8_t* f, uint32_t len) {
  const uint8_t* ip = f + ETH_HDR;
  if (len < ETH_HDR + IP_HDR || ip[0] >> 4 != 4u) return;
  uint32_t ihl = (ip[0] & 0xfu) * 4u, total = get16(ip + 2);
  if (ihl < IP_HDR || total < ihl || ETH_HDR + total > len) return;
  if (fold(sum16(ip, ihl, 0)) != 0 || (get16(ip + 6) & 0x3fffu) != 0) return; /* damaged, or a fragment */
  if (get32(ip + 16) != config.ip) return;
  if (ip[9] == PROTO_UDP) handle_udp(f, ip, ip + ihl, total - ihl);
  if (ip[9] == PROTO_ICMP) handle_icmp(f, ip, ip + ihl, total - ihl);
}

static void handle_frame(const uint8_t* f, uint32_t len) {
  static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  if (len < ETH_HDR || (!same(f, mac, 6) && !same(f, broadcast, 6))) return;
  uint32_t type = get16(f + 12);
  if (type == ETHERTYPE_ARP) handle_arp(f, len);
  if (type == ETHERTYPE_IPV4) handle_ipv4(f, len);
}

static void post_rx(uint16_t i) {
  volatile struct vring_desc* d = &net_rx_queue.desc[i];
  d->addr = (uint32_t)(uintptr_t)rx_bufs[i];
  d->len = BUF_SIZE;
  d->flags = VRING_DESC_F_WRITE;
  d->next = 0;
  vq_submit(&net_rx_queue, i);
}

void net_poll(void) {
  uint16_t head;
  uint32_t len;
  while (vq_next_used(&net_rx_queue, &head, &len)) {
    if (head < RX_BUFS && len > VNET_HDR) handle_frame(rx_bufs[head] + VNET_HDR, len - VNET_HDR);
    if (head < RX_BUFS) post_rx(head);
  }
}

int net_init(const struct net_config* cfg) {
  struct pci_device d;
  if (!pci_find(VIRTIO_VENDOR, VIRTIO_DEVICE_NET, &d)) return 0;
  config = *cfg;
  if (!(virtio_begin(d.io_base, VIRTIO_NET_F_MAC) & VIRTIO_NET_F_MAC) ||
      !virtio_queue(&net_rx_queue, d.io_base, 0, rx_mem) || !virtio_queue(&tx_queue, d.io_base, 1, tx_mem)) {
    serial_printf("tandem-guest net: virtio-net at io %x cannot be driven (no MAC or no queues)\n",
                  (uint32_t)d.io_base);
    net_rx_queue.used = 0;
    virtio_fail(d.io_base);
    return 0;
  }
  for (uint32_t i = 0; i < 6; ++i) mac[i] = inb(d.io_base + VIRTIO_PCI_CONFIG + i);
  virtio_ready(d.io_base);
  for (uint16_t i = 0; i < RX_BUFS; ++i) post_rx(i);
  char mac_text[18];
  for (uint32_t i = 0; i < 6; ++i) {
    mac_text[3 * i] = "0123456789abcdef"[mac[i] >> 4];
    mac_text[3 * i + 1] = "0123456789abcdef"[mac[i] & 0xfu];
    mac_text[3 * i + 2] = i < 5 ? ':' : '\0';
  }
  serial_printf("tandem-guest net: virtio-net 00:%x.%u io=%x mac=%s ip=%u.%u.%u.%u port=%u\n", (uint32_t)d.dev,
                (uint32_t)d.fn, (uint32_t)d.io_base, mac_text, cfg->ip >> 24, cfg->ip >> 16 & 0xffu,
                cfg->ip >> 8 & 0xffu, cfg->ip & 0xffu, (uint32_t)cfg->port);
  return 1;
}
