#include "tests/guest/guest_image.h"

#include <cstring>
#include <string>

#include "tests/guest/guest_layout.h"

namespace tandem::testguest {
namespace {

class Pages {
 public:
  Pages(std::span<const uint8_t> ram, uint32_t pages) : ram_(ram), pages_(pages) {}

  uint32_t Word(uint32_t page, uint32_t word) const {
    uint32_t v;
    std::memcpy(&v, ram_.data() + TANDEM_GUEST_PAGES_BASE + size_t{page} * TANDEM_GUEST_PAGE_SIZE + word * 4u, 4);
    return v;  // the guest is little-endian like every host tandem runs on
  }
  bool HasHeader(uint32_t i) const {
    return Word(i, TANDEM_GUEST_W_MAGIC) == TANDEM_GUEST_MAGIC && Word(i, TANDEM_GUEST_W_INDEX) == i &&
           Word(i, TANDEM_GUEST_W_PAGES) == pages_;
  }
  // Words a round rewrites: counter, check, fill (fill=full), tail.
  // Clean(i, v): all of them say v. Torn(i, c): each says c or c - 1 (the guest stopped mid-page).
  bool Clean(uint32_t i, uint32_t v, bool full) const { return Matches(i, v, v, full); }
  bool Torn(uint32_t i, uint32_t c, bool full) const { return Matches(i, c, c - 1u, full); }

 private:
  bool Matches(uint32_t i, uint32_t a, uint32_t b, bool full) const {
    auto is = [&](uint32_t w) { return w == a || w == b; };
    if (!is(Word(i, TANDEM_GUEST_W_COUNTER)) || !is(Word(i, TANDEM_GUEST_W_TAIL))) return false;
    uint32_t check = Word(i, TANDEM_GUEST_W_CHECK);
    if (check != tandem_guest_check(i, pages_, a) && check != tandem_guest_check(i, pages_, b)) return false;
    if (full)
      for (uint32_t w = TANDEM_GUEST_W_FILL; w < TANDEM_GUEST_W_TAIL; ++w)
        if (!is(Word(i, w))) return false;
    return true;
  }

  std::span<const uint8_t> ram_;
  uint32_t pages_;
};

// Page i does not hold `expected`: name the first word that says otherwise.
Status Mismatch(const Pages& pages, uint32_t i, uint32_t n, uint32_t expected, bool full) {
  auto broken = [&](const char* what, uint32_t found, uint32_t want) {
    return Status::Corruption("page " + std::to_string(i) + ": " + what + " " + std::to_string(found) + " vs " +
                              std::to_string(want));
  };
  if (uint32_t v = pages.Word(i, TANDEM_GUEST_W_COUNTER); v != expected) return broken("counter", v, expected);
  if (uint32_t v = pages.Word(i, TANDEM_GUEST_W_TAIL); v != expected) return broken("tail word", v, expected);
  uint32_t check = tandem_guest_check(i, n, expected);
  if (uint32_t v = pages.Word(i, TANDEM_GUEST_W_CHECK); v != check) return broken("check word", v, check);
  if (full)
    for (uint32_t w = TANDEM_GUEST_W_FILL; w < TANDEM_GUEST_W_TAIL; ++w)
      if (uint32_t v = pages.Word(i, w); v != expected) return broken("fill word", v, expected);
  return Status::Corruption("page " + std::to_string(i) + ": does not hold counter " + std::to_string(expected));
}

uint32_t Word32(std::span<const uint8_t> ram, size_t offset) {
  uint32_t v;
  std::memcpy(&v, ram.data() + offset, 4);
  return v;
}

// The request service's page: with nothing pending its check word matches reqs; while request p is being
// recorded reqs is p - 1 or p and the check word may still be p - 1's (the VM can stop between the stores).
Status CheckServicePage(std::span<const uint8_t> ram, GuestImageState* st) {
  auto word = [&](uint32_t w) { return Word32(ram, TANDEM_GUEST_SVC_BASE + w * 4u); };
  if (word(TANDEM_GUEST_SVC_W_MAGIC) != TANDEM_GUEST_SVC_MAGIC) return Status::Ok();
  st->has_service = true;
  st->service_devices = word(TANDEM_GUEST_SVC_W_DEVICES);
  st->reqs = word(TANDEM_GUEST_SVC_W_REQS);
  st->reqs_pending = word(TANDEM_GUEST_SVC_W_PENDING);
  const uint32_t check = word(TANDEM_GUEST_SVC_W_CHECK), r = st->reqs, p = st->reqs_pending;
  auto broken = [&](const std::string& what) {
    return Status::Corruption("service page: " + what + " (reqs " + std::to_string(r) + " pending " +
                              std::to_string(p) + " check " + std::to_string(check) + ")");
  };
  if (p == 0) return check == tandem_guest_svc_check(r) ? Status::Ok() : broken("check word does not match reqs");
  if (r != p && r != p - 1u) return broken("reqs is neither the pending request nor the one before");
  if (check != tandem_guest_svc_check(r) && check != tandem_guest_svc_check(p - 1u))
    return broken("check word matches neither reqs nor the request before the pending one");
  return Status::Ok();
}

}  // namespace

Result<GuestImageState> CheckGuestImage(std::span<const uint8_t> ram) {
  if (ram.size() < TANDEM_GUEST_PAGES_BASE + TANDEM_GUEST_PAGE_SIZE)
    return Status::NotFound("RAM image smaller than the test guest's first page");
  GuestImageState st;
  TANDEM_RETURN_IF_ERROR(CheckServicePage(ram, &st));
  {
    uint32_t head[TANDEM_GUEST_W_FILL];
    std::memcpy(head, ram.data() + TANDEM_GUEST_PAGES_BASE, sizeof head);
    if (head[TANDEM_GUEST_W_MAGIC] != TANDEM_GUEST_MAGIC || head[TANDEM_GUEST_W_INDEX] != 0)
      return Status::NotFound("no test guest page at guest-physical 0x200000");
    st.pages = head[TANDEM_GUEST_W_PAGES];
    st.full_fill = head[TANDEM_GUEST_W_MODE] == TANDEM_GUEST_FILL_FULL;
    if (head[TANDEM_GUEST_W_MODE] > TANDEM_GUEST_FILL_DATA)
      return Status::Corruption("page 0: unknown fill mode " + std::to_string(head[TANDEM_GUEST_W_MODE]));
    // The counter word is the first store of a page's round, so page 0's says c even if page 0 is torn.
    st.counter = head[TANDEM_GUEST_W_COUNTER];
  }
  if (st.pages == 0 || (ram.size() - TANDEM_GUEST_PAGES_BASE) / TANDEM_GUEST_PAGE_SIZE < st.pages)
    return Status::Corruption("page 0: page count " + std::to_string(st.pages) + " does not fit the image");
  const Pages pages(ram, st.pages);
  const uint32_t c = st.counter, n = st.pages;
  const bool full = st.full_fill;
  uint32_t i = 0;
  while (i < n && pages.HasHeader(i) && pages.Clean(i, c, full)) ++i;
  st.boundary = i;
  if (i < n && c == 0 && !pages.HasHeader(i)) {
    // The boot pass writes counter 0 to pages in order; the rest of RAM is whatever it was.
    st.initializing = true;
    return st;
  }
  if (i < n && pages.HasHeader(i) && !pages.Clean(i, c - 1u, full) && pages.Torn(i, c, full)) {
    st.torn = true;
    ++i;
  }
  for (; i < n; ++i) {
    if (!pages.HasHeader(i))
      return Status::Corruption("page " + std::to_string(i) + ": header is not the test guest's (magic " +
                                std::to_string(pages.Word(i, TANDEM_GUEST_W_MAGIC)) + " index " +
                                std::to_string(pages.Word(i, TANDEM_GUEST_W_INDEX)) + " pages " +
                                std::to_string(pages.Word(i, TANDEM_GUEST_W_PAGES)) + ")");
    if (!pages.Clean(i, c - 1u, full)) {
      // The first page after the run of c could have held c too; past it (or past a torn page) only c - 1.
      bool c_allowed = i == st.boundary && pages.Word(i, TANDEM_GUEST_W_COUNTER) != c - 1u;
      return Mismatch(pages, i, n, c_allowed ? c : c - 1u, full);
    }
  }
  return st;
}

Result<uint32_t> LastDiskRecord(std::span<const uint8_t> disk) {
  constexpr size_t kWords = TANDEM_GUEST_SECTOR_SIZE / 4u;
  const size_t sectors = disk.size() / TANDEM_GUEST_SECTOR_SIZE;
  for (size_t k = 1; k < sectors; ++k) {
    uint32_t w[kWords];
    std::memcpy(w, disk.data() + k * TANDEM_GUEST_SECTOR_SIZE, sizeof w);
    const uint32_t v = uint32_t(k);
    if (w[TANDEM_GUEST_REC_W_MAGIC] == TANDEM_GUEST_REC_MAGIC && w[TANDEM_GUEST_REC_W_VALUE] == v &&
        w[TANDEM_GUEST_REC_W_CHECK] == tandem_guest_rec_check(v) && w[TANDEM_GUEST_REC_W_TAIL] == v)
      continue;
    for (uint32_t word : w)
      if (word != 0) return Status::Corruption("sector " + std::to_string(k) + " is not record " + std::to_string(k));
    return v - 1u;
  }
  return sectors ? uint32_t(sectors - 1) : 0u;
}

Status CheckServiceMatchesDisk(const GuestImageState& ram, uint32_t disk_last) {
  if (!ram.has_service) return Status::NotFound("the RAM image has no request service page");
  const uint32_t p = ram.reqs_pending;
  const bool ok = p == 0 ? disk_last == ram.reqs : (disk_last == p || disk_last == p - 1u);
  if (ok) return Status::Ok();
  return Status::Corruption("disk=" + std::to_string(disk_last) + " ram=" + std::to_string(ram.reqs) +
                            " pending=" + std::to_string(p));
}

}  // namespace tandem::testguest
