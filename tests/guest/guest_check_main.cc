// tandem-guest-check <ram-file>: is the test guest's state in this RAM image (replica file, RAM backing file of
// a stopped VM) one consistent instant? Prints one line; exit 0 consistent, 1 broken invariant, 2 not a test
// guest image or unreadable.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cstdio>
#include <span>

#include "common/fd.h"
#include "tests/guest/guest_image.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <ram-image>\n", argv[0]);
    return 2;
  }
  tandem::UniqueFd fd(::open(argv[1], O_RDONLY | O_CLOEXEC));
  struct stat sb {};
  if (!fd.valid() || ::fstat(fd.get(), &sb) != 0 || sb.st_size <= 0) {
    std::printf("unreadable: %s\n", argv[1]);
    return 2;
  }
  size_t size = static_cast<size_t>(sb.st_size);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (map == MAP_FAILED) {
    std::printf("unreadable: mmap %s failed\n", argv[1]);
    return 2;
  }
  auto r = tandem::testguest::CheckGuestImage(std::span(static_cast<const uint8_t*>(map), size));
  int rc = 0;
  if (r.ok()) {
    std::printf("ok pages=%u counter=%u boundary=%u torn=%d initializing=%d fill=%s", r->pages, r->counter,
                r->boundary, r->torn ? 1 : 0, r->initializing ? 1 : 0, r->full_fill ? "full" : "sparse");
    // Only for guests that run the request service (a NIC or a disk), so other lines stay as they were.
    if (r->has_service && r->service_devices != 0) std::printf(" reqs=%u pending=%u", r->reqs, r->reqs_pending);
    std::printf("\n");
  } else if (r.status().IsCorruption()) {
    std::printf("BROKEN: %s\n", r.status().message().c_str());
    rc = 1;
  } else {
    std::printf("not a test guest image: %s\n", r.status().message().c_str());
    rc = 2;
  }
  ::munmap(map, size);
  return rc;
}
