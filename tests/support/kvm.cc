#include "tests/support/kvm.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace tandem::testing {

std::string KvmUnusableReason() {
  static const std::string reason = [] {
    const char* env = std::getenv("TANDEM_KVM");
    const std::string v = env ? env : "";
    if (v == "usable" || v == "1") return std::string();
    if (v == "unusable" || v == "0") return "KVM NOT USABLE (TANDEM_KVM=" + v + "): the COLO path needs KVM";
    const std::string probe = std::string(TANDEM_SOURCE_DIR) + "/scripts/probe-kvm";
    if (::access(probe.c_str(), X_OK) == 0) {
      const std::string cmd = std::string("TANDEM_TEST_GUEST=") + TANDEM_TEST_GUEST + " " + probe + " 2>&1";
      FILE* p = popen(cmd.c_str(), "r");
      if (!p) return std::string("cannot run scripts/probe-kvm");
      char buf[512];
      std::string out;
      while (fgets(buf, sizeof(buf), p)) out += buf;
      const int rc = pclose(p);
      return rc == 0 ? std::string() : "KVM NOT USABLE, the COLO checkpoint path cannot run here: " + out;
    }
    const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) return "KVM NOT USABLE: cannot open /dev/kvm: " + std::string(std::strerror(errno));
    const int api = ioctl(fd, KVM_GET_API_VERSION, 0);
    ::close(fd);
    return api == KVM_API_VERSION ? std::string() : std::string("KVM NOT USABLE: unexpected KVM API version");
  }();
  return reason;
}

}  // namespace tandem::testing
