#include "metrics/server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "common/log.h"
#include "common/net_address.h"

namespace tandem::metrics {
namespace {

Result<NetAddress> ParseMetricsAddress(const std::string& address, bool allow_any_port) {
  TANDEM_ASSIGN_OR_RETURN(NetAddress parsed, ParseNetAddress(address));
  if (parsed.is_unix) return Status::InvalidArgument(address + ": the metrics endpoint is TCP (host:port)");
  if (parsed.port == 0 && !allow_any_port) return Status::InvalidArgument(address + ": port 0 is no fixed port");
  // A literal, or every address: the endpoint is bound before anything else runs and never waits on DNS.
  TANDEM_RETURN_IF_ERROR(ResolveInet(parsed, /*passive=*/true, /*allow_names=*/false).status());
  return parsed;
}

// Waits until `fd` is ready for `events` or `deadline_ns` (Env clock) passes; false on timeout or error.
bool WaitFor(int fd, short events, int64_t deadline_ns, Env* env) {
  for (;;) {
    const int64_t left_ms = (deadline_ns - env->clock()->NowNanos()) / 1'000'000;
    if (left_ms <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, int(left_ms));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

}  // namespace

Status CheckMetricsAddress(const std::string& address, bool allow_any_port) {
  return ParseMetricsAddress(address, allow_any_port).status();
}

MetricsServer::~MetricsServer() { Stop(); }

Status MetricsServer::Start(const std::string& address, const Registry* registry) {
  if (listener_.valid()) return Status::InvalidArgument("metrics server already started");
  TANDEM_ASSIGN_OR_RETURN(const NetAddress parsed, ParseMetricsAddress(address, /*allow_any_port=*/true));
  TANDEM_ASSIGN_OR_RETURN(const SocketAddress at, ResolveInet(parsed, /*passive=*/true, /*allow_names=*/false));
  auto listener = env_->Listen(at.get(), at.len, 16);
  if (!listener.ok()) return listener.status().WithContext("metrics endpoint " + address);
  // Non-blocking: a connection that is gone by the time we accept it must not block the loop (or Stop).
  if (fcntl(listener->get(), F_SETFL, O_NONBLOCK) != 0) return Status::FromErrno("metrics endpoint: fcntl", errno);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (getsockname(listener->get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    return Status::FromErrno("metrics endpoint: getsockname", errno);
  }
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  TANDEM_RETURN_IF_ERROR(stop_.Open("metrics endpoint"));
  listener_ = std::move(listener).value();
  registry_ = registry;
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void MetricsServer::Stop() {
  stop_.Wake();
  if (thread_.joinable()) thread_.join();
  listener_.reset();
}

void MetricsServer::Loop() {
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_.fd(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      TLOG_ERROR("metrics", "endpoint stops: poll: %s", strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    auto conn = env_->Accept(listener_.get());
    if (conn.ok()) Serve(conn->get());
  }
}

void MetricsServer::Serve(int fd) {
  const int64_t deadline = env_->clock()->NowNanos() + int64_t(kIoTimeoutMs) * 1'000'000;
  const std::string head = ReadHead(fd, deadline);
  if (head.empty()) return;  // nothing in time, or too much: dropped
  // Request line: METHOD SP target SP HTTP-version.
  const std::string_view line = std::string_view(head).substr(0, head.find_first_of("\r\n"));
  const size_t sp1 = line.find(' '), sp2 = line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || line.substr(sp2 + 1, 5) != "HTTP/") {
    Answer(fd, "400 Bad Request", "text/plain", "bad request\n", deadline);
    return;
  }
  const std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics") {
    Answer(fd, "404 Not Found", "text/plain", "not found: the metrics are at /metrics\n", deadline);
  } else if (method != "GET") {
    Answer(fd, "405 Method Not Allowed", "text/plain", "only GET\n", deadline);
  } else {
    Answer(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", registry_->Render(), deadline);
  }
}

std::string MetricsServer::ReadHead(int fd, int64_t deadline) {
  std::string head;
  char buffer[1024];
  while (head.find("\r\n\r\n") == std::string::npos && head.find("\n\n") == std::string::npos) {
    if (head.size() > kMaxRequestBytes || !WaitFor(fd, POLLIN, deadline, env_)) return "";
    const ssize_t n = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n == 0) return "";
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return "";
    }
    head.append(buffer, size_t(n));
  }
  return head;
}

void MetricsServer::Answer(int fd, const char* status, const std::string& content_type, const std::string& body,
                           int64_t deadline) {
  const std::string response = std::string("HTTP/1.1 ") + status + "\r\nContent-Type: " + content_type +
                               "\r\nContent-Length: " + std::to_string(body.size()) +
                               "\r\nConnection: close\r\n\r\n" + body;
  size_t sent = 0;
  while (sent < response.size()) {
    if (!WaitFor(fd, POLLOUT, deadline, env_)) return;  // a client that does not read is dropped
    const ssize_t n = send(fd, response.data() + sent, response.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return;
    }
    sent += size_t(n);
  }
  // Tell the client we are done before closing, so that what it has not read yet is not lost to a reset.
  shutdown(fd, SHUT_WR);
}

}  // namespace tandem::metrics
