// Host-side check of the test guest's workload pages in a RAM image (a replica file, a RAM backing file of a
// stopped VM): does the image hold one consistent instant of the guest, or a mix of epochs?
#pragma once

#include <cstdint>
#include <span>

#include "common/status.h"

namespace tandem::testguest {

struct GuestImageState {
  uint32_t pages = 0;
  uint32_t counter = 0;    // newest counter in the image (c)
  uint32_t boundary = 0;   // pages [0, boundary) hold c; the rest hold c - 1 (boundary == pages: all hold c)
  bool torn = false;       // page `boundary` was caught between its first and last store (VM stopped mid-page)
  bool initializing = false;  // c == 0 and pages from `boundary` on were not written yet (guest still booting)
  bool full_fill = false;  // the guest runs with fill=full (every word of each page checked)
  // The request service's page (guest_layout.h), when the guest has one (guests built before it have not).
  bool has_service = false;
  uint32_t service_devices = 0;  // TANDEM_GUEST_SVC_NIC | TANDEM_GUEST_SVC_DISK
  uint32_t reqs = 0;             // requests counted in RAM
  uint32_t reqs_pending = 0;     // 0, or the request whose record was being written when the VM stopped
};

// `ram` starts at guest-physical address 0 (q35 with < 2.75 GiB: the start of the RAM backing file).
// NotFound: the guest's pages are not there (wrong file, guest not started yet).
// Corruption: the invariant is broken; the message names the first offending page, e.g.
// "page 16: counter 1857 vs 1858", or "service page: ..." when the request counter's check word disagrees.
Result<GuestImageState> CheckGuestImage(std::span<const uint8_t> ram);

// The request log on the guest's disk image (raw): the last record of the intact prefix (0: none). Corruption
// when a sector after it is neither empty nor the next record, e.g. "sector 3 is not record 3".
Result<uint32_t> LastDiskRecord(std::span<const uint8_t> disk);

// RAM (an image's service page) and disk agree: the disk's last record is reqs, or, while request p is pending,
// p - 1 or p (README.md, "The disk invariant"). Corruption names both, e.g. "disk=4 ram=5 pending=0".
Status CheckServiceMatchesDisk(const GuestImageState& ram, uint32_t disk_last);

}  // namespace tandem::testguest
