/* Memory layout of the tandem test guest's workload pages, shared by the guest (freestanding C) and by
 * host-side checkers (C++) that read a RAM image (e.g. a standby's replica file) and want to know whether it
 * holds one consistent epoch.
 *
 * Page i (0 <= i < pages) lives at guest-physical TANDEM_GUEST_PAGES_BASE + i * TANDEM_GUEST_PAGE_SIZE.
 * On q35 with less than ~2.75 GiB of RAM, guest-physical == offset in the RAM backing file; with more, and more
 * pages than fit below 4 GiB, the guest maps the RAM above 4 GiB right after low RAM (paging.h), and its
 * (virtual) addresses are again the offsets in the RAM file.
 * Each page is an array of 1024 little-endian 32-bit words:
 *   [0] TANDEM_GUEST_MAGIC   [1] page index   [2] number of pages   [3] counter
 *   [4] tandem_guest_check(index, pages, counter)   [5] fill mode (TANDEM_GUEST_FILL_*)
 *   [6..1022] counter with fill=full; untouched (whatever RAM held) with fill=sparse; with fill=data, contents
 *             like a real program's (text, small integers and pointers, mostly-zero pages, random bytes), a
 *             function of (index, counter) that the checkers do not verify (tandem_guest_data_word)
 *   [1023] counter
 * Words 0, 1, 2 and 5 are written once at boot; each round rewrites 3, 4, 1023 (and the fill with fill=full).
 * fill=sparse is the default because on hosts where KVM emulates this 32-bit guest instruction by instruction
 * (nested setups: ~0.4 us per instruction) every instruction counts; fill=full makes realistic page contents.
 * Each round the guest increments the counter and rewrites pages 0..pages-1 in order, so any snapshot taken at
 * an instant shows counters c,..,c,c-1,..,c-1 (at most one boundary, difference exactly 1).
 */
#ifndef TANDEM_TESTS_GUEST_GUEST_LAYOUT_H
#define TANDEM_TESTS_GUEST_GUEST_LAYOUT_H

#include <stdint.h>

#define TANDEM_GUEST_PAGES_BASE 0x200000u /* 2 MiB: above the kernel image and the multiboot info */
#define TANDEM_GUEST_PAGE_SIZE 4096u
#define TANDEM_GUEST_PAGE_WORDS (TANDEM_GUEST_PAGE_SIZE / 4u)
#define TANDEM_GUEST_MAGIC 0x4d444e54u /* "TNDM" in memory */
#define TANDEM_GUEST_W_MAGIC 0
#define TANDEM_GUEST_W_INDEX 1
#define TANDEM_GUEST_W_PAGES 2
#define TANDEM_GUEST_W_COUNTER 3
#define TANDEM_GUEST_W_CHECK 4
#define TANDEM_GUEST_W_MODE 5
#define TANDEM_GUEST_W_FILL 6 /* first word of the counter fill (fill=full only) */
#define TANDEM_GUEST_W_TAIL (TANDEM_GUEST_PAGE_WORDS - 1u)
#define TANDEM_GUEST_FILL_SPARSE 0u
#define TANDEM_GUEST_FILL_FULL 1u
#define TANDEM_GUEST_FILL_DATA 2u

/* Only a few instructions (see fill=sparse above), yet a page header copied from another page or another epoch
 * does not verify. */
#define TANDEM_GUEST_CHECK_COUNTER_MUL 0x9e3779b1u
#define TANDEM_GUEST_CHECK_COUNTER_XOR 0x27d4eb2fu
#define TANDEM_GUEST_CHECK_INDEX_MUL 0x85ebca77u
/* Additive in the index so the guest's page loop keeps it in one register (+= INDEX_MUL per page). */
static inline uint32_t tandem_guest_check(uint32_t index, uint32_t pages, uint32_t counter) {
  return (counter ^ TANDEM_GUEST_CHECK_COUNTER_XOR) * TANDEM_GUEST_CHECK_COUNTER_MUL +
         index * TANDEM_GUEST_CHECK_INDEX_MUL + pages;
}

/* The request service (a NIC and/or a disk, see README.md): its state lives in one page just below the workload
 * pages, so a RAM image carries it too. Words (little-endian 32-bit):
 *   [0] TANDEM_GUEST_SVC_MAGIC   [1] reqs: requests counted (== the last record on disk when there is a disk)
 *   [2] tandem_guest_svc_check(reqs)   [3] pending: 0, or the value being recorded (reqs + 1) while a request
 *   is between "record written" and "counter updated"   [4] devices (TANDEM_GUEST_SVC_NIC | _DISK)
 * One request: pending = n, record n written to the disk and completed, reqs = n, check, pending = 0, reply.
 * So with pending == 0 the check word matches reqs; with pending == n, reqs is n - 1 or n and the check word
 * matches one of them (the VM may stop between any two stores). */
#define TANDEM_GUEST_SVC_BASE 0x1ff000u
#define TANDEM_GUEST_SVC_MAGIC 0x43565354u /* "TSVC" in memory */
#define TANDEM_GUEST_SVC_W_MAGIC 0
#define TANDEM_GUEST_SVC_W_REQS 1
#define TANDEM_GUEST_SVC_W_CHECK 2
#define TANDEM_GUEST_SVC_W_PENDING 3
#define TANDEM_GUEST_SVC_W_DEVICES 4
#define TANDEM_GUEST_SVC_NIC 1u
#define TANDEM_GUEST_SVC_DISK 2u

/* Disk records: sector k (k >= 1, 512 bytes) holds the record of the k-th request. Sector 0 is never written.
 *   [0] TANDEM_GUEST_REC_MAGIC   [1] k   [2] tandem_guest_rec_check(k)   [3..126] 0   [127] k
 * The records form a prefix: the first all-zero sector after sector 0 ends the log; any other sector that is not
 * record k is damage. */
#define TANDEM_GUEST_SECTOR_SIZE 512u
#define TANDEM_GUEST_REC_MAGIC 0x43455254u /* "TREC" in memory */
#define TANDEM_GUEST_REC_W_MAGIC 0
#define TANDEM_GUEST_REC_W_VALUE 1
#define TANDEM_GUEST_REC_W_CHECK 2
#define TANDEM_GUEST_REC_W_TAIL 127

static inline uint32_t tandem_guest_svc_check(uint32_t reqs) {
  return (reqs ^ TANDEM_GUEST_CHECK_COUNTER_XOR) * TANDEM_GUEST_CHECK_INDEX_MUL + 0x5356u;
}
static inline uint32_t tandem_guest_rec_check(uint32_t value) {
  return (value ^ TANDEM_GUEST_CHECK_COUNTER_XOR) * TANDEM_GUEST_CHECK_COUNTER_MUL + 0x5245u;
}

#endif
