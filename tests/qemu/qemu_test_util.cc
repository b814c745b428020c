#include "tests/qemu/qemu_test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/guest/guest_layout.h"

namespace tandem::qemu::testing {

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<uint8_t> ReadFixture(const std::string& name) {
  const std::string path = std::string(TANDEM_QEMU_TEST_DATA) + "/" + name;
  const std::string compressed = ReadFileOrEmpty(path);
  if (compressed.empty()) throw std::runtime_error("missing fixture " + path);
  const unsigned long long size = ZSTD_getFrameContentSize(compressed.data(), compressed.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) throw std::runtime_error("bad zstd " + path);
  std::vector<uint8_t> out(size);
  const size_t n = ZSTD_decompress(out.data(), out.size(), compressed.data(), compressed.size());
  if (ZSTD_isError(n) || n != size) throw std::runtime_error("zstd decompress failed: " + path);
  return out;
}

std::string TestGuestPath() { return TANDEM_TEST_GUEST; }

VmConfig TestGuestVm(const std::string& dir, const std::string& tag, const std::string& accel, uint64_t memory_mb,
                     const std::string& append) {
  VmConfig vm;
  vm.name = "qt-" + tag;
  vm.memory_mb = memory_mb;
  vm.accel = accel;
  vm.kernel = TestGuestPath();
  vm.append = append;
  vm.ram_path = dir + "/" + tag + ".ram";
  vm.qmp_socket = dir + "/" + tag + ".qmp";
  vm.serial_log = dir + "/" + tag + ".serial";
  return vm;
}

std::vector<CounterLine> ParseCounters(const std::string& serial) {
  std::vector<CounterLine> lines;
  std::istringstream in(serial);
  std::string line;
  while (std::getline(in, line)) {
    // A last line without its newline is still being written by the guest: "counter=24 o" is not a bad line.
    if (in.eof()) break;
    if (line.rfind("counter=", 0) != 0) continue;
    char* end = nullptr;
    CounterLine c;
    c.counter = std::strtoull(line.c_str() + 8, &end, 10);
    if (end == line.c_str() + 8) continue;
    c.ok = std::string(end) == " ok";
    lines.push_back(c);
  }
  return lines;
}

bool WaitUntil(int timeout_ms, const std::function<bool()>& done) {
  for (int waited = 0; waited <= timeout_ms; waited += 10) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

std::string CheckGuestPages(std::span<const uint8_t> ram, uint32_t pages, uint32_t* counter, bool verify_check_word) {
  auto word = [&](uint32_t page, uint32_t w) {
    uint32_t v;
    std::memcpy(&v, ram.data() + TANDEM_GUEST_PAGES_BASE + size_t(page) * TANDEM_GUEST_PAGE_SIZE + 4 * w, 4);
    return v;
  };
  if (pages == 0 || TANDEM_GUEST_PAGES_BASE + size_t(pages) * TANDEM_GUEST_PAGE_SIZE > ram.size()) {
    return "RAM image too small";
  }
  // A page is whole for round v when its counter, tail and check word all say v.
  auto whole = [&](uint32_t i, uint32_t v) {
    return word(i, TANDEM_GUEST_W_COUNTER) == v && word(i, TANDEM_GUEST_W_TAIL) == v &&
           (!verify_check_word || word(i, TANDEM_GUEST_W_CHECK) == tandem_guest_check(i, pages, v));
  };
  // The snapshot may stop the vCPU in the middle of writing one page (the one at the boundary): its words are a
  // mix of rounds c and c-1, which the vCPU completes once it resumes.
  const uint32_t c = std::max(word(0, TANDEM_GUEST_W_COUNTER), word(0, TANDEM_GUEST_W_TAIL));
  bool past_boundary = false;
  for (uint32_t i = 0; i < pages; ++i) {
    const std::string where = "page " + std::to_string(i) + ": ";
    if (word(i, TANDEM_GUEST_W_MAGIC) != TANDEM_GUEST_MAGIC) return where + "no magic";
    if (word(i, TANDEM_GUEST_W_INDEX) != i) return where + "wrong index";
    if (word(i, TANDEM_GUEST_W_PAGES) != pages) return where + "wrong page count";
    if (!past_boundary && whole(i, c)) continue;
    if (whole(i, c - 1)) {
      past_boundary = true;
      continue;
    }
    const uint32_t cw = word(i, TANDEM_GUEST_W_COUNTER), tw = word(i, TANDEM_GUEST_W_TAIL);
    const bool mixed_of_two_rounds = (cw == c || cw == c - 1) && (tw == c || tw == c - 1);
    if (past_boundary || !mixed_of_two_rounds) {
      return where + "counter " + std::to_string(cw) + " tail " + std::to_string(tw) + " where round " +
             std::to_string(past_boundary ? c - 1 : c) + " was expected (page from another epoch?)";
    }
    past_boundary = true;  // the one page being written at the snapshot
  }
  *counter = c;
  return "";
}

}  // namespace tandem::qemu::testing
