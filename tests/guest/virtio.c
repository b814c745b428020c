#include "virtio.h"

#include "io.h"

#define VIRTIO_PCI_HOST_FEATURES 0x00
#define VIRTIO_PCI_GUEST_FEATURES 0x04
#define VIRTIO_PCI_QUEUE_PFN 0x08
#define VIRTIO_PCI_QUEUE_NUM 0x0c
#define VIRTIO_PCI_QUEUE_SEL 0x0e
#define VIRTIO_PCI_QUEUE_NOTIFY 0x10
#define VIRTIO_PCI_STATUS 0x12
#define STATUS_ACKNOWLEDGE 1u
#define STATUS_DRIVER 2u
#define STATUS_DRIVER_OK 4u
#define STATUS_FAILED 0x80u
#define VRING_AVAIL_F_NO_INTERRUPT 1u

uint32_t virtio_begin(uint16_t io, uint32_t wanted) {
  outb(io + VIRTIO_PCI_STATUS, 0); /* reset */
  outb(io + VIRTIO_PCI_STATUS, STATUS_ACKNOWLEDGE);
  outb(io + VIRTIO_PCI_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  uint32_t accepted = inl(io + VIRTIO_PCI_HOST_FEATURES) & wanted;
  outl(io + VIRTIO_PCI_GUEST_FEATURES, accepted);
  return accepted;
}

int virtio_queue(struct vq* q, uint16_t io, uint16_t index, void* mem) {
  outw(io + VIRTIO_PCI_QUEUE_SEL, index);
  uint16_t size = inw(io + VIRTIO_PCI_QUEUE_NUM);
  if (size == 0 || size > VIRTQ_MAX_SIZE) return 0;
  uint8_t* base = (uint8_t*)mem;
  for (uint32_t i = 0; i < VIRTQ_MEM_BYTES; ++i) base[i] = 0;
  q->io = io;
  q->index = index;
  q->size = size;
  q->avail_idx = 0;
  q->used_seen = 0;
  q->desc = (volatile struct vring_desc*)base;
  q->avail = (volatile uint16_t*)(base + 16u * size);
  uint32_t used_off = (16u * size + 6u + 2u * size + 4095u) & ~4095u; /* legacy layout: used ring page-aligned */
  q->used = (volatile uint16_t*)(base + used_off);
  q->avail[0] = VRING_AVAIL_F_NO_INTERRUPT;
  outl(io + VIRTIO_PCI_QUEUE_PFN, (uint32_t)(uintptr_t)mem >> 12);
  return 1;
}

void virtio_ready(uint16_t io) {
  outb(io + VIRTIO_PCI_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK);
}

void virtio_fail(uint16_t io) { outb(io + VIRTIO_PCI_STATUS, STATUS_FAILED); }

void vq_submit(struct vq* q, uint16_t head) {
  q->avail[2 + q->avail_idx % q->size] = head;
  compiler_barrier(); /* the descriptor and ring entry before the index the device polls */
  q->avail[1] = ++q->avail_idx;
  compiler_barrier();
  outw(q->io + VIRTIO_PCI_QUEUE_NOTIFY, q->index);
}

int vq_next_used(struct vq* q, uint16_t* head, uint32_t* len) {
  if (q->used[1] == q->used_seen) return 0;
  compiler_barrier();
  volatile const uint32_t* elem = (volatile const uint32_t*)(q->used + 2) + 2u * (q->used_seen % q->size);
  *head = (uint16_t)elem[0];
  *len = elem[1];
  ++q->used_seen;
  return 1;
}
