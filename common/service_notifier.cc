#include "common/service_notifier.h"

namespace tandem {
namespace {

class SilentNotifier final : public ServiceNotifier {
 public:
  void Ready() override {}
  void Status(const std::string&) override {}
  void Watchdog() override {}
};

}  // namespace

ServiceNotifier* NoServiceNotifier() {
  static SilentNotifier silent;
  return &silent;
}

}  // namespace tandem
