// A shutdown request (SIGINT/SIGTERM in the tandem binary, a call in tests) that the roles' loops watch.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>

namespace tandem::roles {

class Shutdown {
 public:
  // Idempotent. Runs the hook (once) and wakes WaitFor.
  void Request();
  bool Requested() const { return requested_.load(); }
  // Sleeps up to timeout_ms; true once a shutdown was requested.
  bool WaitFor(int timeout_ms);

  // Runs `on_request` when a shutdown is requested (at once if it already was) while the Hook lives; its
  // destructor waits for a running hook, so what the hook touches may be destroyed right after it.
  class Hook {
   public:
    Hook(Shutdown* shutdown, std::function<void()> on_request);
    ~Hook();
    Hook(const Hook&) = delete;
    Hook& operator=(const Hook&) = delete;

   private:
    Shutdown* shutdown_;
  };

 private:
  std::atomic<bool> requested_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> hook_;
};

// SIGINT/SIGTERM without async-signal hazards: the signals are blocked in every thread and one thread waits for
// them and requests `shutdown` (which must live as long as the process). Call first thing in main, before any
// thread starts.
void RequestShutdownOnSignals(Shutdown* shutdown);

}  // namespace tandem::roles
