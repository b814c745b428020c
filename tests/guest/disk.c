#include "disk.h"

#include "guest_layout.h"
#include "io.h"
#include "pci.h"
#include "serial.h"
#include "virtio.h"

#define VIRTIO_BLK_T_IN 0u
#define VIRTIO_BLK_T_OUT 1u
#define VIRTIO_BLK_S_OK 0u

struct blk_header {
  uint32_t type;
  uint32_t ioprio;
  uint64_t sector;
};

static uint8_t queue_mem[VIRTQ_MEM_BYTES] __attribute__((aligned(4096)));
static struct vq queue;
static volatile struct blk_header header;
static volatile uint8_t status_byte;
static uint32_t sectors;

int disk_init(void) {
  struct pci_device d;
  if (!pci_find(VIRTIO_VENDOR, VIRTIO_DEVICE_BLK, &d)) return 0;
  virtio_begin(d.io_base, 0);
  if (!virtio_queue(&queue, d.io_base, 0, queue_mem)) {
    serial_printf("tandem-guest disk: virtio-blk at io %x has no usable queue 0\n", (uint32_t)d.io_base);
    virtio_fail(d.io_base);
    return 0;
  }
  uint32_t lo = inl(d.io_base + VIRTIO_PCI_CONFIG), hi = inl(d.io_base + VIRTIO_PCI_CONFIG + 4);
  sectors = hi ? 0xffffffffu : lo; /* records are numbered in 32 bits; more sectors are never used */
  virtio_ready(d.io_base);
  serial_printf("tandem-guest disk: virtio-blk 00:%x.%u io=%x sectors=%u\n", (uint32_t)d.dev, (uint32_t)d.fn,
                (uint32_t)d.io_base, sectors);
  return 1;
}

uint32_t disk_sectors(void) { return sectors; }

static int request(uint32_t type, uint32_t sector, void* buf, uint32_t count) {
  header.type = type;
  header.ioprio = 0;
  header.sector = sector;
  status_byte = 0xff;
  volatile struct vring_desc* desc = queue.desc;
  desc[0].addr = (uint32_t)(uintptr_t)&header;
  desc[0].len = sizeof header;
  desc[0].flags = VRING_DESC_F_NEXT;
  desc[0].next = 1;
  desc[1].addr = (uint32_t)(uintptr_t)buf;
  desc[1].len = count * TANDEM_GUEST_SECTOR_SIZE;
  desc[1].flags = VRING_DESC_F_NEXT | (type == VIRTIO_BLK_T_IN ? VRING_DESC_F_WRITE : 0u);
  desc[1].next = 2;
  desc[2].addr = (uint32_t)(uintptr_t)&status_byte;
  desc[2].len = 1;
  desc[2].flags = VRING_DESC_F_WRITE;
  desc[2].next = 0;
  vq_submit(&queue, 0);
  uint16_t head;
  uint32_t len;
  /* No timeout: a disk that stops answering (VM being checkpointed, slow host) must not look like a failure. */
  while (!vq_next_used(&queue, &head, &len)) cpu_relax();
  compiler_barrier();
  return status_byte == VIRTIO_BLK_S_OK;
}

int disk_read(uint32_t sector, void* buf, uint32_t count) {
  if (sectors == 0 || sector >= sectors || count > sectors - sector) return 0;
  return request(VIRTIO_BLK_T_IN, sector, buf, count);
}

int disk_write(uint32_t sector, const void* buf, uint32_t count) {
  if (sectors == 0 || sector >= sectors || count > sectors - sector) return 0;
  return request(VIRTIO_BLK_T_OUT, sector, (void*)(uintptr_t)buf, count);
}
