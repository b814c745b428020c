/* virtio-blk (legacy, polled): whole sectors, one request at a time, each waited for. */
#ifndef TANDEM_TESTS_GUEST_DISK_H
#define TANDEM_TESTS_GUEST_DISK_H

#include <stdint.h>

/* Finds and starts the first virtio-blk device. 0 when there is none (or it cannot be driven). */
int disk_init(void);
/* Capacity in 512-byte sectors (0 without a disk). */
uint32_t disk_sectors(void);
/* Reads or writes `count` sectors from `sector` into/from `buf` (identity-mapped RAM) and waits until the
 * device has completed the request. 1 on success, 0 on a device error. */
int disk_read(uint32_t sector, void* buf, uint32_t count);
int disk_write(uint32_t sector, const void* buf, uint32_t count);

#endif
