// The Prometheus endpoint: GET /metrics answers with a Registry's text exposition, any other path 404, any other
// method 405. A deliberately small HTTP/1.1 server (one request per connection, Connection: close) on its own
// thread: the roles link no HTTP library, and the endpoint only ever reads the registry. One connection is
// served at a time; a client gets kIoTimeoutMs to send its request and to take the answer, then it is dropped.
#pragma once

#include <string>
#include <thread>

#include "common/env.h"
#include "common/fd.h"
#include "common/status.h"
#include "common/waker.h"
#include "metrics/metrics.h"

namespace tandem::metrics {

// "host:port" or "[v6]:port" (common/net_address.h; host empty or "*": every address). Unix sockets and names
// are refused (the endpoint never waits on DNS); port 0 only when `allow_any_port` (tests).
Status CheckMetricsAddress(const std::string& address, bool allow_any_port = false);

class MetricsServer {
 public:
  static constexpr int kIoTimeoutMs = 2000;
  static constexpr size_t kMaxRequestBytes = 8192;

  explicit MetricsServer(Env* env = Env::Default()) : env_(env) {}
  ~MetricsServer();  // Stop()s
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds `address` (CheckMetricsAddress, port 0 allowed) and serves `registry`, which must outlive the server,
  // until Stop(). Fails when the address cannot be bound.
  Status Start(const std::string& address, const Registry* registry);
  int port() const { return port_; }
  // Returns once no request is being served and none will be. Idempotent.
  void Stop();

 private:
  void Loop();
  void Serve(int fd);
  // The request's head (up to the empty line), or "" when the client sent none in time.
  std::string ReadHead(int fd, int64_t deadline_ns);
  void Answer(int fd, const char* status, const std::string& content_type, const std::string& body,
              int64_t deadline_ns);

  Env* env_;
  const Registry* registry_ = nullptr;
  UniqueFd listener_;
  Waker stop_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace tandem::metrics
