// tandem-guest-check <ram-file> [<disk-image>]: is the test guest's state in this RAM image (replica file, RAM
// backing file of a stopped VM), and with a disk image its request log too, one consistent instant? Prints one
// line; exit 0 consistent, 1 broken invariant, 2 not a test guest image or unreadable.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cstdio>
#include <span>
#include <string>

#include "common/fd.h"
#include "tests/guest/guest_image.h"

namespace {

// A read-only mapping of a whole file, unmapped on destruction.
class MappedFile {
 public:
  explicit MappedFile(const char* path) {
    tandem::UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    struct stat sb {};
    if (!fd.valid() || ::fstat(fd.get(), &sb) != 0 || sb.st_size <= 0) return;
    void* map = ::mmap(nullptr, static_cast<size_t>(sb.st_size), PROT_READ, MAP_SHARED, fd.get(), 0);
    if (map != MAP_FAILED) data_ = std::span(static_cast<const uint8_t*>(map), static_cast<size_t>(sb.st_size));
  }
  ~MappedFile() {
    if (!data_.empty()) ::munmap(const_cast<uint8_t*>(data_.data()), data_.size());
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::span<const uint8_t> data() const { return data_; }

 private:
  std::span<const uint8_t> data_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: %s <ram-image> [<disk-image>]\n", argv[0]);
    return 2;
  }
  const MappedFile ram(argv[1]);
  if (ram.data().empty()) {
    std::printf("unreadable: %s\n", argv[1]);
    return 2;
  }
  auto r = tandem::testguest::CheckGuestImage(ram.data());
  if (!r.ok()) {
    const bool broken = r.status().IsCorruption();
    std::printf(broken ? "BROKEN: %s\n" : "not a test guest image: %s\n", r.status().message().c_str());
    return broken ? 1 : 2;
  }
  std::string disk_note;
  if (argc == 3) {
    const MappedFile disk(argv[2]);
    if (disk.data().empty()) {
      std::printf("unreadable: %s\n", argv[2]);
      return 2;
    }
    auto last = tandem::testguest::LastDiskRecord(disk.data());
    tandem::Status agree = last.ok() ? tandem::testguest::CheckServiceMatchesDisk(*r, *last) : last.status();
    if (!agree.ok()) {
      const bool broken = agree.IsCorruption();
      std::printf(broken ? "BROKEN: disk: %s\n" : "not a test guest image: %s\n", agree.message().c_str());
      return broken ? 1 : 2;
    }
    disk_note = " disk=" + std::to_string(*last);
  }
  std::printf("ok pages=%u counter=%u boundary=%u torn=%d initializing=%d fill=%s", r->pages, r->counter, r->boundary,
              r->torn ? 1 : 0, r->initializing ? 1 : 0, r->full_fill ? "full" : "sparse");
  // Only for guests that run the request service (a NIC or a disk), so other lines stay as they were.
  if (r->has_service && r->service_devices != 0) std::printf(" reqs=%u pending=%u", r->reqs, r->reqs_pending);
  std::printf("%s\n", disk_note.c_str());
  return 0;
}
