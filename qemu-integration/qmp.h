// A QMP (QEMU Machine Protocol) client over QEMU's unix socket: synchronous commands, with the asynchronous
// events that arrive in between kept for WaitForEvent.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/env.h"
#include "common/fd.h"
#include "common/status.h"

#include <sys/types.h>

namespace tandem::qemu {

class QmpClient {
 public:
  // Connects to QEMU's QMP socket, retrying while QEMU has not created it yet (or is not accepting), reads the
  // greeting and negotiates capabilities (qmp_capabilities). The socket comes from `env`, and every deadline of
  // this client runs on env->clock() (the Env must outlive the client). Timeout names the last connect error;
  // any other connect error is returned at once.
  static Result<std::unique_ptr<QmpClient>> Connect(const std::string& unix_path, int timeout_ms,
                                                    Env* env = Env::Default());

  // Runs `command` and returns its "return" value. A QMP "error" reply becomes InvalidArgument with QEMU's error
  // class and description; a lost connection Closed; no reply in time Timeout (a late reply is discarded).
  Result<nlohmann::json> Execute(const std::string& command, const nlohmann::json& arguments = nullptr,
                                 int timeout_ms = 5000);

  // Returns the first event named `name` (the whole event object: event, data, timestamp) received since the
  // connection was made and not yet returned by an earlier call, waiting up to timeout_ms for it.
  Result<nlohmann::json> WaitForEvent(const std::string& name, int timeout_ms);
  // Every event QEMU has sent so far, oldest first, without waiting. A long-lived client must call this now and
  // then: COLO stops and resumes the VM every epoch, and unread STOP/RESUME events would pile up in QEMU.
  Result<std::vector<nlohmann::json>> TakeEvents();

  // The process at the other end of the socket (SO_PEERCRED): QEMU's pid when tandem did not spawn it (libvirt);
  // -1 if unknown.
  pid_t PeerPid() const;

  // The greeting's "QMP" object ({"version": ..., "capabilities": ...}).
  const nlohmann::json& greeting() const { return greeting_; }

 private:
  QmpClient(UniqueFd fd, Clock* clock) : fd_(std::move(fd)), clock_(clock) {}
  int64_t DeadlineAfter(int timeout_ms) const { return clock_->NowNanos() + int64_t(timeout_ms) * 1'000'000; }
  // Next complete message, waiting until `deadline_ns` (monotonic). Events are returned like any message.
  Result<nlohmann::json> ReadMessage(int64_t deadline_ns);
  Status Send(const nlohmann::json& message);
  Result<nlohmann::json> ExecuteLocked(const std::string& command, const nlohmann::json& arguments, int timeout_ms);
  void QueueEvent(nlohmann::json event);

  std::mutex mu_;  // one command or event wait at a time
  UniqueFd fd_;
  Clock* const clock_;
  std::string buffer_;
  std::deque<nlohmann::json> events_;
  uint64_t next_id_ = 1;
  nlohmann::json greeting_;
};

}  // namespace tandem::qemu
