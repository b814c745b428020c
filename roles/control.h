// The running role's control socket, <state_dir>/control.sock (a private directory: only tandem's user can
// connect): one request line in, one answer line out. `tandem switchover` uses it to ask the primary role to
// hand the VM to its standby.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/fd.h"
#include "common/status.h"

namespace tandem::roles {

std::string ControlSocketIn(const std::string& state_dir);

class ControlServer {
 public:
  // `handle` answers one request (without its newline) on the server's thread; it may block (a switchover
  // answers once it is done). One client at a time.
  static Result<std::unique_ptr<ControlServer>> Start(const std::string& socket_path,
                                                      std::function<std::string(const std::string&)> handle);
  ~ControlServer();  // stops accepting, removes the socket file

 private:
  ControlServer(std::string path, UniqueFd listener, std::function<std::string(const std::string&)> handle);
  void Serve();

  const std::string path_;
  UniqueFd listener_;
  std::function<std::string(const std::string&)> handle_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Sends `request` to the role listening on `socket_path` and returns its answer line; waits up to timeout_ms.
// Unavailable when nothing listens there.
Result<std::string> AskRole(const std::string& socket_path, const std::string& request, int timeout_ms);

}  // namespace tandem::roles
