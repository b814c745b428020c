/* Legacy virtio over PCI I/O ports (virtio 0.9.5 / "transitional" devices with QEMU's disable-modern=on): the
 * smallest driver that both virtio-net and virtio-blk accept. Everything is polled; interrupts stay off. */
#ifndef TANDEM_TESTS_GUEST_VIRTIO_H
#define TANDEM_TESTS_GUEST_VIRTIO_H

#include <stdint.h>

#define VIRTIO_VENDOR 0x1af4u
#define VIRTIO_DEVICE_NET 0x1000u /* transitional ids */
#define VIRTIO_DEVICE_BLK 0x1001u
/* Device-specific configuration, without MSI-X (we never enable it). */
#define VIRTIO_PCI_CONFIG 0x14u

#define VRING_DESC_F_NEXT 1u
#define VRING_DESC_F_WRITE 2u
/* A legacy queue of up to this many entries fits in VIRTQ_MEM_BYTES (descriptors, available ring, page
 * alignment, used ring). The device dictates the size: QEMU's virtio-net and virtio-blk use 256. */
#define VIRTQ_MAX_SIZE 256u
#define VIRTQ_MEM_BYTES (3u * 4096u)

struct vring_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

struct vq {
  uint16_t io;    /* the device's I/O base */
  uint16_t index; /* queue number */
  uint16_t size;
  uint16_t avail_idx; /* next free slot of the available ring (free-running) */
  uint16_t used_seen; /* used entries consumed so far (free-running) */
  volatile struct vring_desc* desc;
  volatile uint16_t* avail; /* flags, idx, ring[size] */
  volatile uint16_t* used;  /* flags, idx, then {u32 id, u32 len}[size] */
};

/* Resets the device and negotiates features: `wanted` & what the device offers. Returns the accepted set. */
uint32_t virtio_begin(uint16_t io, uint32_t wanted);
/* Sets up queue `index` in `mem` (VIRTQ_MEM_BYTES, 4 KiB-aligned, below 4 GiB). 0 if the queue does not exist
 * or is larger than VIRTQ_MAX_SIZE. */
int virtio_queue(struct vq* q, uint16_t io, uint16_t index, void* mem);
/* The driver is ready: the device starts processing queues. */
void virtio_ready(uint16_t io);
void virtio_fail(uint16_t io);

/* Offers the chain starting at descriptor `head` to the device and notifies it. */
void vq_submit(struct vq* q, uint16_t head);
/* 1 and the chain's head and written length when the device has returned a chain since the last call. */
int vq_next_used(struct vq* q, uint16_t* head, uint32_t* len);
/* Cheap enough for the workload's inner loop: has the device returned anything not yet consumed? */
static inline int vq_has_used(const struct vq* q) { return q->used && q->used[1] != q->used_seen; }

#endif
